package jail_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// durableOptions are a Supervisor's options with adoptable environments.
func durableOptions(t *testing.T) jail.Options {
	jailtest.RequireRoot(t)
	return jail.Options{CgroupPrefix: jailtest.CgroupPrefix(t.TempDir()), KillGrace: 200 * time.Millisecond,
		RecordDir: filepath.Join(jailtest.SearchableTempDir(t), "envs")}
}

// TestAdoptAfterDetach: an environment with a linger outlives the
// Supervisor that started it; a new one adopts it, and a join by its key
// lands in it, her processes there.
func TestAdoptAfterDetach(t *testing.T) {
	opts := durableOptions(t)
	spec := newSpec(t, "erin")
	spec.Linger = time.Hour
	s1, err := jail.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e, err := s1.Environment(context.Background(), "tenant/erin", spec)
	if err != nil {
		t.Fatal(err)
	}
	sh(t, e, "sleep 1000 </dev/null >/dev/null 2>&1 &")
	e.Release()
	s1.Detach()
	if n := len(jailtest.RangeProcs(spec.IDMap.UID, spec.IDMap.Size)); n < 2 {
		t.Fatalf("after Detach %d processes of hers remain, want her init and sleep", n)
	}

	s2, err := jail.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	if len(s2.Found()) != 1 {
		t.Fatalf("found %d recorded environments, want 1", len(s2.Found()))
	}
	n := s2.Adopt(context.Background(), func(context.Context, *jail.EnvRecord) (*jail.EnvSpec, error) {
		c := *spec
		return &c, nil
	})
	if n != 1 {
		t.Fatalf("adopted %d environments, want 1", n)
	}
	e2 := environment(t, s2, "tenant/erin", spec)
	if got := sh(t, e2, "ps -eo comm"); !strings.Contains(got, "sleep") {
		t.Errorf("the adopted environment lost her sleep:\n%s", got)
	}
	s2.Close()
	jailtest.WaitNoProcs(t, spec.IDMap.UID, spec.IDMap.Size, 2*time.Second)
	if left, _ := os.ReadDir(opts.RecordDir); len(left) > 0 {
		t.Errorf("records or sockets left after Close: %v", left)
	}
}

// TestControlSocketRefusesStrangers: the init's listening socket answers
// no one but a gateway that shows the record's token. A non-root process
// (let in by loosened modes, as a misconfigured host might) sending
// garbage, and root with a forged token, are both cut off, and the
// environment goes on.
func TestControlSocketRefusesStrangers(t *testing.T) {
	opts := durableOptions(t)
	s, err := jail.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	spec := newSpec(t, "fay")
	e := environment(t, s, "tenant/fay", spec)
	socks, _ := filepath.Glob(filepath.Join(opts.RecordDir, "*.sock"))
	if len(socks) != 1 {
		t.Fatalf("sockets %v, want one", socks)
	}
	fi, err := os.Stat(opts.RecordDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("record dir mode %v (%v), want 0700", fi.Mode(), err)
	}
	os.Chmod(filepath.Dir(opts.RecordDir), 0o755)
	os.Chmod(opts.RecordDir, 0o755)
	os.Chmod(socks[0], 0o777)

	// A non-root host process: the helper mode in TestMain dials, sends
	// garbage, and says whether the init hung up.
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), dialEnv+"="+socks[0])
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "refused") {
		t.Errorf("non-root garbage: %v, %q; want the init to hang up", err, out)
	}
	// Root with a forged hello, then root with garbage.
	for _, msg := range []string{`{"op":"hello","token":"forged","pid":1}`, "\x00\xffgarbage"} {
		if !dialRefused(t, socks[0], msg) {
			t.Errorf("root sending %q: the init answered", msg)
		}
	}
	if got := sh(t, e, "echo alive"); strings.TrimSpace(got) != "alive" {
		t.Errorf("environment after the strangers: %q", got)
	}
}

// dialEnv makes the test binary a dialer (TestMain in durable_main_test).
const dialEnv = "JAILGATE_TEST_DIAL"

// dialRefused sends msg on the socket and reports whether the other end
// hung up without answering.
func dialRefused(t testing.TB, path, msg string) bool {
	c, err := net.Dial("unixpacket", path)
	if err != nil {
		if t != nil {
			t.Errorf("dial %s: %v", path, err)
		}
		fmt.Println("dial:", err)
		return false
	}
	defer c.Close()
	c.Write([]byte(msg))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return n == 0
}

// TestCorruptRecordsSkipped: a truncated or corrupt record, and one whose
// init is gone, are skipped, reported and removed with their socket.
func TestCorruptRecordsSkipped(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.json":    `{"name":"a","tenant":"x","ke`,
		"b.json":    `{"name":"other","tenant":"x","key":"tenant/x","pid":99999999,"token":"t"}`,
		"c.json":    `{"name":"c","tenant":"x","key":"tenant/x","pid":99999999,"start":1,"token":"t"}`,
		"c.sock":    "",
		"orph.sock": "",
	}
	for name, body := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600)
	}
	recs, errs := jail.ReadRecords(dir)
	if len(recs) != 0 || len(errs) != 3 {
		t.Fatalf("records %v, errors %v; want none and 3", recs, errs)
	}
	for _, err := range errs {
		var re *jail.RecordError
		if !errors.As(err, &re) {
			t.Errorf("error %v is not a RecordError", err)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left after the skip: %v", left)
	}
}

// TestTwoGatewaysOneKey: two Supervisors on one state_dir (the two sides
// of an upgrade) share a key's environment: one that the other started
// after this one adopted what it found is joined, not started twice.
func TestTwoGatewaysOneKey(t *testing.T) {
	opts := durableOptions(t)
	spec := newSpec(t, "gil")
	spec.Linger = time.Hour
	oldSide, err := jail.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	newSide, err := jail.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { newSide.Close(); oldSide.Close() })
	a := environment(t, oldSide, "tenant/gil", spec)
	sh(t, a, "echo from-old > /tmp/mark")
	b := environment(t, newSide, "tenant/gil", spec)
	if got := sh(t, b, "cat /tmp/mark"); strings.TrimSpace(got) != "from-old" {
		t.Errorf("the new side started its own environment: /tmp/mark %q", got)
	}
	// The old side lets go; her environment lives on with the new side's session.
	a.Release()
	oldSide.Detach()
	if got := sh(t, b, "cat /tmp/mark"); strings.TrimSpace(got) != "from-old" {
		t.Errorf("after the old side left: %q", got)
	}
	b.Release()
	newSide.Close()
	jailtest.WaitNoProcs(t, spec.IDMap.UID, spec.IDMap.Size, 2*time.Second)
	if left, _ := os.ReadDir(opts.RecordDir); len(left) > 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("left in the record dir: %v", names)
	}
}
