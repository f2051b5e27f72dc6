package admin

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jailgate/jailgate/statedir"
)

// shortTempDir is a temp dir with a path short enough for a unix socket
// (sun_path holds 108 bytes; t.TempDir's can be longer).
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jg-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestAdminSocket: a request reaches the handler and its reply comes back;
// the socket is owner-only; a second server on the state directory is
// refused; closing removes the socket, after which a client is told that
// no server runs.
func TestAdminSocket(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "state")
	l, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Request, 1)
	served := make(chan error, 1)
	go func() {
		served <- Serve(l, func(r Request) Reply {
			got <- r
			return Reply{OK: true, Summary: "3 tenants", Changes: []string{"+ tenant carol"}}
		})
	}()
	fi, err := os.Stat(statedir.New(dir).AdminSocket())
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("admin socket: %v %v, want a socket with mode 0600", fi.Mode(), err)
	}

	reply, err := Call(dir, Request{Op: "reload", Config: "/etc/jailgate/jailgate.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if req := <-got; !reply.OK || reply.Summary != "3 tenants" || len(reply.Changes) != 1 || req.Config != "/etc/jailgate/jailgate.yaml" {
		t.Errorf("reply %+v to request %+v", reply, req)
	}
	if reply, err := Call(dir, Request{Op: "shutdown"}); err != nil || reply.OK || !strings.Contains(reply.Error, "unknown op") {
		t.Errorf("unknown op: %+v %v", reply, err)
	}

	if _, err := Listen(dir); !errors.Is(err, ErrServerRunning) {
		t.Errorf("a second server on the state dir: %v, want ErrServerRunning", err)
	}

	l.Close()
	if err := <-served; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if _, err := os.Lstat(statedir.New(dir).AdminSocket()); err == nil {
		t.Error("the admin socket outlived its listener")
	}
	if _, err := Call(dir, Request{Op: "reload"}); !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), dir) {
		t.Errorf("no server: %v, want ErrNoServer naming the state dir", err)
	}
}

// TestAdminSocketStale: a socket left by a server that died is reported as
// such, and the next server replaces it.
func TestAdminSocketStale(t *testing.T) {
	dir := shortTempDir(t)
	dead, err := net.Listen("unix", statedir.New(dir).AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	dead.(*net.UnixListener).SetUnlinkOnClose(false)
	dead.Close()
	if _, err := Call(dir, Request{Op: "reload"}); !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), "gone") {
		t.Errorf("stale socket: %v, want ErrNoServer saying the server is gone", err)
	}
	l, err := Listen(dir)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	defer l.Close()
	go Serve(l, func(Request) Reply { return Reply{OK: true} })
	if reply, err := Call(dir, Request{Op: "reload"}); err != nil || !reply.OK {
		t.Errorf("after replacing the stale socket: %+v %v", reply, err)
	}
}

// TestAdminHandover: the old server releases the socket without removing
// it, the new one inherits the same listening socket and answers on the
// same path, and an upgrade request reaches the handler with its reply.
func TestAdminHandover(t *testing.T) {
	dir := filepath.Join(shortTempDir(t), "state")
	old, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := old.File() // what tableflip passes to the new process
	if err != nil {
		t.Fatal(err)
	}
	fl, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	inherited, err := Inherit(fl, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(inherited.Path()); err != nil {
		t.Fatalf("the old server's release removed the socket: %v", err)
	}
	go Serve(inherited, func(r Request) Reply {
		return Reply{OK: r.Op == OpUpgrade, OldPID: 1, NewPID: 2, NewVersion: "v2"}
	})
	reply, err := Call(dir, Request{Op: OpUpgrade, Config: "/etc/jailgate/jailgate.yaml"})
	if err != nil || !reply.OK || reply.NewPID != 2 || reply.NewVersion != "v2" {
		t.Fatalf("upgrade through the inherited socket: %+v %v", reply, err)
	}
	inherited.Close()
	if _, err := os.Stat(inherited.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("closing the inherited socket left it: %v", err)
	}
	if _, err := Inherit(&net.TCPListener{}, dir); err == nil {
		t.Error("Inherit took a TCP listener as the admin socket")
	}
}
