package jail_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/jailgate/jailgate/jail"
)

// TestSFTPSymlinkOrder starts the jail's SFTP server in a real environment
// as the gateway does, with the client's identification in
// jail.SFTPClientEnv, and makes links the way each kind of client writes
// them on the wire.
func TestSFTPSymlinkOrder(t *testing.T) {
	s := newSupervisor(t)
	env := environment(t, s, "sftp", newSpec(t, "sftp"))
	sh(t, env, "mkdir -p /root/sub")
	open := func(client string) *sftp.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		p, err := env.Spawn(ctx, &jail.ProcSpec{Subsystem: "sftp", Argv: []string{"sftp-server"},
			Env: []string{"HOME=/root", jail.SFTPClientEnv + "=" + client}, Dir: "/root"})
		if err != nil {
			t.Fatal(err)
		}
		c, err := sftp.NewClientPipe(p.Stdout(), p.Stdin())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); p.Wait() })
		return c
	}
	// pkg/sftp's Client.Symlink(a, b) writes a, then b.
	openssh := open("SSH-2.0-OpenSSH_9.6p1")
	// OpenSSH's order, symlink(target, link) on the wire: "../data", "sub/o".
	if err := openssh.Symlink("../data", "sub/o"); err != nil {
		t.Fatal(err)
	}
	asyncssh := open("SSH-2.0-AsyncSSH_2.14.2")
	// The draft's order, asyncssh's symlink("../data", "sub/a") on the wire:
	// "sub/a", "../data".
	if err := asyncssh.Symlink("sub/a", "../data"); err != nil {
		t.Fatal(err)
	}
	if got := sh(t, env, "readlink /root/sub/o /root/sub/a"); got != "../data\n../data\n" {
		t.Errorf("readlink: %q, want ../data for both", strings.Split(got, "\n"))
	}
}
