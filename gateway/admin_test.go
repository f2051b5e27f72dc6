package gateway

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	l, err := ListenAdmin(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan AdminRequest, 1)
	served := make(chan error, 1)
	go func() {
		served <- ServeAdmin(l, func(r AdminRequest) AdminReply {
			got <- r
			return AdminReply{OK: true, Summary: "3 tenants", Changes: []string{"+ tenant carol"}}
		})
	}()
	fi, err := os.Stat(AdminSocket(dir))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("admin socket: %v %v, want a socket with mode 0600", fi.Mode(), err)
	}

	reply, err := CallAdmin(dir, AdminRequest{Op: "reload", Config: "/etc/jailgate/jailgate.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if req := <-got; !reply.OK || reply.Summary != "3 tenants" || len(reply.Changes) != 1 || req.Config != "/etc/jailgate/jailgate.yaml" {
		t.Errorf("reply %+v to request %+v", reply, req)
	}
	if reply, err := CallAdmin(dir, AdminRequest{Op: "shutdown"}); err != nil || reply.OK || !strings.Contains(reply.Error, "unknown op") {
		t.Errorf("unknown op: %+v %v", reply, err)
	}

	if _, err := ListenAdmin(dir); !errors.Is(err, ErrServerRunning) {
		t.Errorf("a second server on the state dir: %v, want ErrServerRunning", err)
	}

	l.Close()
	if err := <-served; err != nil {
		t.Errorf("ServeAdmin after Close: %v", err)
	}
	if _, err := os.Lstat(AdminSocket(dir)); err == nil {
		t.Error("the admin socket outlived its listener")
	}
	if _, err := CallAdmin(dir, AdminRequest{Op: "reload"}); !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), dir) {
		t.Errorf("no server: %v, want ErrNoServer naming the state dir", err)
	}
}

// TestAdminSocketStale: a socket left by a server that died is reported as
// such, and the next server replaces it.
func TestAdminSocketStale(t *testing.T) {
	dir := shortTempDir(t)
	dead, err := net.Listen("unix", AdminSocket(dir))
	if err != nil {
		t.Fatal(err)
	}
	dead.(*net.UnixListener).SetUnlinkOnClose(false)
	dead.Close()
	if _, err := CallAdmin(dir, AdminRequest{Op: "reload"}); !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), "gone") {
		t.Errorf("stale socket: %v, want ErrNoServer saying the server is gone", err)
	}
	l, err := ListenAdmin(dir)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	defer l.Close()
	go ServeAdmin(l, func(AdminRequest) AdminReply { return AdminReply{OK: true} })
	if reply, err := CallAdmin(dir, AdminRequest{Op: "reload"}); err != nil || !reply.OK {
		t.Errorf("after replacing the stale socket: %+v %v", reply, err)
	}
}
