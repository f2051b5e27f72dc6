package gateway_test

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// reloadAlice reloads h with a copy of its snapshot in which tune changed
// alice (her keys too: the key index is rebuilt from them).
func reloadAlice(t *testing.T, h *gatewaytest.Harness, tune func(next *config.Config, alice *config.User)) {
	t.Helper()
	alice := *h.Server.Config().Users["alice"]
	alice.Keys = append(alice.Keys[:0:0], alice.Keys...)
	next := gatewaytest.Config(&alice)
	tune(next, &alice)
	next.Keys = gatewaytest.Config(&alice).Keys
	h.Server.SetConfig(next)
}

// TestSnapshotPerChannel pins the snapshot rule (SetConfig, admitChannel)
// on ONE connection: a session opened after a reload takes its tenant
// settings from the new snapshot (max_session_time here), while the
// session opened before keeps what it started with.
func TestSnapshotPerChannel(t *testing.T) {
	h, _, c := fwdLab(t, func(*config.User) {})
	first, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	var firstErr bytes.Buffer
	first.Stderr = &firstErr
	out, _ := first.StdoutPipe()
	if err := first.Start("echo started; sleep 1.2; echo done"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "started\n", wait)

	reloadAlice(t, h, func(_ *config.Config, alice *config.User) { alice.MaxSessionTime = 300 * time.Millisecond })

	// A new session on the same connection gets the new limit...
	second, err := c.NewSession()
	if err != nil {
		t.Fatalf("a session on the old connection after the reload: %v", err)
	}
	defer second.Close()
	var secondErr bytes.Buffer
	second.Stderr = &secondErr
	if err := second.Run("sleep 5"); err == nil || !strings.Contains(secondErr.String(), "maximum session time (300ms) reached") {
		t.Errorf("the second session: err %v, stderr %q; want it ended at the reload's 300ms", err, secondErr.String())
	}
	// ...while the first runs to its end under the settings it opened with.
	gatewaytest.Expect(t, out, "done\n", wait)
	if err := first.Wait(); err != nil || firstErr.Len() > 0 {
		t.Errorf("the first session: %v, stderr %q; want it to finish as started", err, firstErr.String())
	}
}

// TestSnapshotRevokedKeyRefusesNewChannels: a reload that replaces alice's
// key (with revoke: keep-sessions, so her connection stays up) refuses
// every new channel and global request on her old connection (session,
// direct-tcpip, tcpip-forward), while her live session goes on.
func TestSnapshotRevokedKeyRefusesNewChannels(t *testing.T) {
	port := strconv.Itoa(echoListener(t, "echo"))
	h, _, c := fwdLab(t, func(u *config.User) { u.Forwarding.Local, u.Forwarding.Remote = true, true })
	fc, err := c.Dial("tcp", "localhost:"+port)
	if err != nil {
		t.Fatalf("ssh -L before the reload: %v", err)
	}
	if got := roundTrip(t, fc, "hi"); got != "echo:hi" {
		t.Fatalf("ssh -L before the reload: %q", got)
	}
	live, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	in, _ := live.StdinPipe()
	out, _ := live.StdoutPipe()
	if err := live.Start("echo up; cat"); err != nil {
		t.Fatal(err)
	}
	gatewaytest.Expect(t, out, "up\n", wait)

	_, otherPub := gatewaytest.NewKey(t)
	reloadAlice(t, h, func(next *config.Config, alice *config.User) {
		next.Revoke = config.RevokeKeepSessions
		alice.Keys[0].Key = otherPub
	})

	if s, err := c.NewSession(); err == nil {
		s.Close()
		t.Error("a new session opened on the old connection after her key was removed")
	}
	if fc, err := c.Dial("tcp", "localhost:"+port); err == nil {
		t.Errorf("ssh -L opened on the old connection after her key was removed; it answered %q", roundTrip(t, fc, "hi"))
	} else if !strings.Contains(err.Error(), "not authorized") {
		t.Errorf("ssh -L after the reload: %v, want the authorization refusal", err)
	}
	if l, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
		t.Error("ssh -R listened on the old connection after her key was removed")
	}
	// The live session keeps what it started with.
	io.WriteString(in, "still here\n")
	gatewaytest.Expect(t, out, "still here\n", wait)
	in.Close()
	if err := live.Wait(); err != nil {
		t.Errorf("the live session: %v", err)
	}
	if n := strings.Count(h.Logs(), "reason=\"key not listed\""); n < 3 {
		t.Errorf("%d refusals logged with reason key not listed, want 3:\n%s", n, h.Logs())
	}
}
