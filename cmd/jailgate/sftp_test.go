//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jailgate/jailgate/statedir"
)

// TestE2ESFTP drives the jail's own SFTP server with OpenSSH's scp (SFTP
// protocol, the default since OpenSSH 9) and sftp -b.
func TestE2ESFTP(t *testing.T) {
	g := startServe(t)
	local := t.TempDir()
	src := filepath.Join(local, "big.bin")
	data := make([]byte, 50<<20)
	io.ReadFull(rand.Reader, data)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	scp := func(args ...string) {
		t.Helper()
		if _, errOut, code := g.openssh(t, "scp", "", append(g.clientOpts("alice", "-P"), args...)...); code != 0 {
			t.Fatalf("scp %v: exit %d: %s", args, code, errOut)
		}
	}

	t.Run("50 MiB round trip", func(t *testing.T) {
		scp(src, "alice@127.0.0.1:big.bin")
		back := filepath.Join(local, "back.bin")
		scp("alice@127.0.0.1:big.bin", back)
		got, err := os.ReadFile(back)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the file came back different (%d bytes, %v)", len(got), err)
		}
		// It landed in her home, owned by her ids on the host.
		fi, err := os.Stat(filepath.Join(g.rootfs["alice"], "root/big.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fileUID(fi); uid != g.idBase(t, "alice") {
			t.Errorf("uploaded file owned by host uid %d, want alice's base %d", uid, g.idBase(t, "alice"))
		}
	})

	t.Run("upload through a symlink to /etc stays in her tree", func(t *testing.T) {
		if _, errOut, code := g.ssh(t, "alice", "", "ln -s /etc /root/etclink"); code != 0 {
			t.Fatalf("ln: %s", errOut)
		}
		scp(src, "alice@127.0.0.1:etclink/jailgate-evil")
		if _, err := os.Stat("/etc/jailgate-evil"); err == nil {
			os.Remove("/etc/jailgate-evil")
			t.Fatal("the upload through etclink reached the host's /etc")
		}
		if _, err := os.Stat(filepath.Join(g.rootfs["alice"], "etc/jailgate-evil")); err != nil {
			t.Errorf("the upload did not land in her own /etc: %v", err)
		}
	})

	t.Run("scp -O (legacy protocol, the rootfs's own scp)", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(g.rootfs["alice"], "usr/bin/scp")); err != nil {
			t.Fatalf("from-host did not copy scp into the rootfs: %v", err)
		}
		scp("-O", src, "alice@127.0.0.1:legacy.bin")
		got, err := os.ReadFile(filepath.Join(g.rootfs["alice"], "root/legacy.bin"))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("scp -O upload: %d bytes, %v", len(got), err)
		}
	})

	t.Run("scp -O without scp in the rootfs says why", func(t *testing.T) {
		// bob has not logged in yet: his tree is still the host's to edit.
		for _, dir := range []string{"usr/bin", "bin", "usr/local/bin"} {
			if err := os.Remove(filepath.Join(g.rootfs["bob"], dir, "scp")); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
		}
		_, errOut, code := g.openssh(t, "scp", "", append(g.clientOpts("bob", "-P"), "-O", src, "bob@127.0.0.1:legacy.bin")...)
		if code == 0 {
			t.Fatal("scp -O succeeded without scp in the rootfs")
		}
		if !strings.Contains(errOut, "jailgate: scp -O (the legacy protocol) needs an scp program in your environment") {
			t.Errorf("scp -O stderr does not say why:\n%s", errOut)
		}
		// SFTP-mode scp needs nothing in the rootfs.
		if _, errOut, code := g.openssh(t, "scp", "", append(g.clientOpts("bob", "-P"), src, "bob@127.0.0.1:sftp.bin")...); code != 0 {
			t.Errorf("scp (SFTP) without scp in the rootfs: exit %d: %s", code, errOut)
		}
	})

	t.Run("sftp batch", func(t *testing.T) {
		batch := filepath.Join(local, "batch")
		os.WriteFile(batch, []byte(strings.Join([]string{
			"mkdir d", "put " + src + " d/a.bin", "rename d/a.bin d/b.bin", "chmod 600 d/b.bin",
			"symlink d/b.bin link", "ls -l d", "get link " + filepath.Join(local, "viaLink.bin"),
			"rm d/b.bin", "rm link", "rmdir d", "ls",
		}, "\n")+"\n"), 0o600)
		out, errOut, code := g.openssh(t, "sftp", "", append(g.clientOpts("alice", "-P"), "-b", batch, "alice@127.0.0.1")...)
		if code != 0 {
			t.Fatalf("sftp -b: exit %d\n%s\n%s", code, out, errOut)
		}
		if !strings.Contains(out, "-rw-------") || !strings.Contains(out, "b.bin") {
			t.Errorf("ls -l after rename and chmod:\n%s", out)
		}
		if got, _ := os.ReadFile(filepath.Join(local, "viaLink.bin")); !bytes.Equal(got, data) {
			t.Error("get through the symlink returned other data")
		}
		if _, err := os.Stat(filepath.Join(g.rootfs["alice"], "root/d")); err == nil {
			t.Error("rmdir d left the directory")
		}
	})

	t.Run("sftp resume (reput, reget)", func(t *testing.T) {
		// The partial copies differ from the data's start, so a transfer
		// that started over instead of resuming shows.
		head := bytes.Repeat([]byte("x"), 1<<20)
		partial := filepath.Join(local, "partial.bin")
		os.WriteFile(partial, head, 0o600)
		got := filepath.Join(local, "reget.bin")
		gotHead := bytes.Repeat([]byte("y"), 512<<10)
		os.WriteFile(got, gotHead, 0o600)
		batch := filepath.Join(local, "resume")
		os.WriteFile(batch, []byte(strings.Join([]string{
			"put " + partial + " resume.bin", "reput " + src + " resume.bin", "reget resume.bin " + got,
		}, "\n")+"\n"), 0o600)
		out, errOut, code := g.openssh(t, "sftp", "", append(g.clientOpts("alice", "-P"), "-b", batch, "alice@127.0.0.1")...)
		if code != 0 {
			t.Fatalf("sftp -b: exit %d\n%s\n%s", code, out, errOut)
		}
		want := append(append([]byte{}, head...), data[len(head):]...)
		remote, err := os.ReadFile(filepath.Join(g.rootfs["alice"], "root/resume.bin"))
		if err != nil || !bytes.Equal(remote, want) {
			t.Errorf("reput: %d bytes, equal to the partial plus the rest: %v (%v)", len(remote), bytes.Equal(remote, want), err)
		}
		want = append(append([]byte{}, gotHead...), want[len(gotHead):]...)
		if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, want) {
			t.Errorf("reget: %d bytes, equal to the partial plus the rest: %v (%v)", len(b), bytes.Equal(b, want), err)
		}
	})

	t.Run("nothing outside her tree by path", func(t *testing.T) {
		// The gateway's state dir (its host key) exists on the host but not
		// in her jail: ../.. cannot climb out of her root.
		key := statedir.New(g.stateDir).HostKey()
		if _, err := os.Stat(key); err != nil {
			t.Fatal(err)
		}
		_, _, code := g.openssh(t, "scp", "", append(g.clientOpts("alice", "-P"),
			"alice@127.0.0.1:../../../../.."+key, filepath.Join(local, "stolen"))...)
		if code == 0 {
			t.Error("scp fetched the gateway's host key by path")
		}
	})
}
