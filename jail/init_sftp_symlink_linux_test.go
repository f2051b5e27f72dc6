package jail

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/pkg/sftp"
)

func TestDraftSymlinkOrder(t *testing.T) {
	for version, draft := range map[string]bool{
		"SSH-2.0-AsyncSSH_2.14.2":        true,
		"SSH-2.0-ssh2js1.17.0":           true,
		"SSH-2.0-libssh_0.10.6":          true,
		"SSH-2.0-WinSCP_release_6.3.5":   true,
		"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3": false,
		"SSH-2.0-Go":                     false,
		"SSH-2.0-paramiko_3.4.0":         false,
		"SSH-2.0-libssh2_1.11.0":         false,
		"SSH-2.0-PuTTY_Release_0.81":     false,
		"AsyncSSH_2.14.2":                false, // not an identification
		"":                               false,
	} {
		if got := draftSymlinkOrder(version); got != draft {
			t.Errorf("draftSymlinkOrder(%q) = %v, want %v", version, got, draft)
		}
	}
}

// packet frames an SFTP packet: uint32 length, byte type, payload.
func packet(typ byte, payload ...[]byte) []byte {
	body := append([]byte{typ}, bytes.Join(payload, nil)...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// str encodes an SFTP string.
func str(s string) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...) }

func TestDraftSymlinksSwapsOnlySymlink(t *testing.T) {
	id := []byte{0, 0, 0, 7}
	write := packet(6, id, str("handle"), make([]byte, 8), str(string(bytes.Repeat([]byte("x"), 70000))))
	malformed := packet(fxpSymlink, id, str("link"), []byte{0, 0, 1, 0}, []byte("short"))
	in := bytes.Join([][]byte{
		write,
		packet(fxpSymlink, id, str("sub/link"), str("../data")),
		malformed,
		packet(fxpSymlink, id, str("l"), str("/abs/target"), []byte("tail")),
		{0, 0}, // a truncated header at the end
	}, nil)
	want := bytes.Join([][]byte{
		write,
		packet(fxpSymlink, id, str("../data"), str("sub/link")),
		malformed,
		packet(fxpSymlink, id, str("/abs/target"), str("l"), []byte("tail")),
		{0, 0},
	}, nil)
	// One byte at a time, so that every boundary falls inside a read.
	got, err := io.ReadAll(&draftSymlinks{r: iotest.OneByteReader(bytes.NewReader(in))})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), equal to the swapped stream: %v", len(got), err, bytes.Equal(got, want))
	}
	got, _ = io.ReadAll(&draftSymlinks{r: bytes.NewReader(in)})
	if !bytes.Equal(got, want) {
		t.Fatal("with large reads, the stream differs")
	}
}

// TestServeSFTPSymlinks runs the jail's SFTP server in-process, from a
// temporary working directory, for a client of each order.
func TestServeSFTPSymlinks(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("sub", 0o755); err != nil {
		t.Fatal(err)
	}
	session := func(version string) *sftp.Client {
		c, s := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- serveSFTP(s, s, version) }()
		client, err := sftp.NewClientPipe(c, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			client.Close()
			if err := <-done; err != nil {
				t.Errorf("serveSFTP(%q): %v", version, err)
			}
		})
		return client
	}
	for _, tc := range []struct {
		client, target, link string
		// symlink is what the client's symlink(target, link) writes: pkg/sftp's
		// Client.Symlink(a, b) writes a, then b.
		symlink func(c *sftp.Client, target, link string) error
	}{
		// OpenSSH's order on the wire: targetpath, linkpath.
		{"SSH-2.0-OpenSSH_9.6p1", "../data", "sub/openssh-rel", (*sftp.Client).Symlink},
		{"SSH-2.0-Go", "/etc/data", "sub/go-abs", (*sftp.Client).Symlink},
		// The draft's order on the wire: linkpath, targetpath.
		{"SSH-2.0-AsyncSSH_2.14.2", "../data", "sub/asyncssh-rel",
			func(c *sftp.Client, target, link string) error { return c.Symlink(link, target) }},
		{"SSH-2.0-ssh2js1.17.0", "/etc/data", "sub/ssh2-abs",
			func(c *sftp.Client, target, link string) error { return c.Symlink(link, target) }},
	} {
		if err := tc.symlink(session(tc.client), tc.target, tc.link); err != nil {
			t.Errorf("%s: symlink(%q, %q): %v", tc.client, tc.target, tc.link, err)
			continue
		}
		if got, err := os.Readlink(filepath.Join(dir, tc.link)); err != nil || got != tc.target {
			t.Errorf("%s: %s -> %q (%v), want %q", tc.client, tc.link, got, err, tc.target)
		}
	}
}
