//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"

	"github.com/jailgate/jailgate/gateway/gatewaytest"
)

// TestE2ESFTPSymlinks makes symlinks over SFTP with OpenSSH's sftp and
// with pkg/sftp's Go client, and reads them back inside with readlink: a
// relative target stays byte-for-byte what the client sent, an absolute
// one stays absolute, and each link points where its client meant.
//
// On the wire, SSH_FXP_SYMLINK's two paths are in OpenSSH's order
// (targetpath, then linkpath) for both clients: OpenSSH's sftp always
// writes that order, and so does pkg/sftp's Client.Symlink(target, link).
// The draft's order (linkpath, targetpath), which asyncssh and Node ssh2
// write to jailgate, is covered in jail/ (TestServeSFTPSymlinks,
// TestSFTPSymlinkOrder).
func TestE2ESFTPSymlinks(t *testing.T) {
	g := startServe(t)
	if _, errOut, code := g.ssh(t, "alice", "", "mkdir -p /root/sub"); code != 0 {
		t.Fatalf("mkdir: %s", errOut)
	}
	want := map[string]string{} // link, relative to her home -> target

	t.Run("OpenSSH sftp", func(t *testing.T) {
		// sftp writes ("../data", "/root/sub/rel"): it makes the link's
		// path absolute, never the target's.
		batch := filepath.Join(t.TempDir(), "batch")
		os.WriteFile(batch, []byte("symlink ../data sub/rel\nln -s /etc/data sub/abs\n"), 0o600)
		out, errOut, code := g.openssh(t, "sftp", "", append(g.clientOpts("alice", "-P"), "-b", batch, "alice@127.0.0.1")...)
		if code != 0 {
			t.Fatalf("sftp -b: exit %d\n%s\n%s", code, out, errOut)
		}
		want["sub/rel"], want["sub/abs"] = "../data", "/etc/data"
	})

	t.Run("Go pkg/sftp client", func(t *testing.T) {
		c := g.sftpClient(t, "alice")
		// Symlink(target, link) writes (target, link) as it is given them.
		for link, target := range map[string]string{"sub/go-rel": "../data", "sub/go-abs": "/etc/data"} {
			if err := c.Symlink(target, link); err != nil {
				t.Fatalf("Symlink(%q, %q): %v", target, link, err)
			}
			if got, err := c.ReadLink(link); err != nil || got != target {
				t.Errorf("ReadLink(%q) over SFTP = %q (%v), want %q", link, got, err, target)
			}
			want[link] = target
		}
	})

	t.Run("draft-order client", func(t *testing.T) {
		// asyncssh, Node ssh2, libssh and WinSCP write the draft's
		// (linkpath, targetpath) to a server whose version is not
		// OpenSSH's; the gateway passes the client's version on, and the
		// SFTP server reads the packet in that order. pkg/sftp's client
		// under asyncssh's version string sends the bytes asyncssh's
		// symlink("../data", "sub/draft") does.
		signer := g.signer(t, "alice")
		conn, err := gossh.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.port), &gossh.ClientConfig{
			User: "alice", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(), ClientVersion: "SSH-2.0-AsyncSSH_2.14.2",
		})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c, err := sftp.NewClient(conn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Symlink("sub/draft", "../data"); err != nil { // (linkpath, targetpath) on the wire
			t.Fatalf("draft-order symlink: %v", err)
		}
		want["sub/draft"] = "../data"
	})

	var links []string
	for link := range want {
		links = append(links, link)
	}
	out, errOut, code := g.ssh(t, "alice", "", "cd /root && for l in "+strings.Join(links, " ")+"; do echo \"$l $(readlink $l)\"; done")
	if code != 0 {
		t.Fatalf("readlink: %s", errOut)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		link, target, _ := strings.Cut(line, " ")
		if target != want[link] {
			t.Errorf("inside, %s -> %q, want %q", link, target, want[link])
		}
	}
	if len(strings.Split(strings.TrimSpace(out), "\n")) != len(want) {
		t.Errorf("readlink inside printed %q for %d links", out, len(want))
	}
}

// signer is user's private key, as the test's OpenSSH clients use it.
func (g *e2eGateway) signer(t *testing.T, user string) gossh.Signer {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(g.dir, user))
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sftpClient is pkg/sftp's client logged in as user over x/crypto/ssh;
// the test's end closes it.
func (g *e2eGateway) sftpClient(t *testing.T, user string) *sftp.Client {
	t.Helper()
	conn, err := gatewaytest.Dial(t, fmt.Sprintf("127.0.0.1:%d", g.port), user, g.signer(t, user))
	if err != nil {
		t.Fatal(err)
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
