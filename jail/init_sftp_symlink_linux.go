package jail

import (
	"encoding/binary"
	"io"
	"strings"
)

// The order of SSH_FXP_SYMLINK's two paths. The draft
// (draft-ietf-secsh-filexfer-02, section 6.10) says linkpath, then
// targetpath; OpenSSH's sftp-server reads them the other way round
// (PROTOCOL, section 4.1: "Reversal of arguments to SSH_FXP_SYMLINK"), and
// so does pkg/sftp's server, which copied it. A client cannot learn from
// SFTP which order a server reads, so each decides from the server's SSH
// identification, and the server, which cannot tell the orders apart in
// the packet either, must decide from the client's.
//
// draftOrderClients are the identifications (after "SSH-2.0-") of the
// clients that write the draft's order to a server whose identification is
// not OpenSSH's, as jailgate's ("SSH-2.0-jailgate") is not. Each names the
// check that would make it write OpenSSH's order instead:
var draftOrderClients = []string{
	"AsyncSSH_", // asyncssh, sftp.py: "OpenSSH" or "paramiko" in the server's version (_nonstandard_symlink_impls)
	"ssh2js",    // Node ssh2, lib/protocol/SFTP.js: the server's matches /^SSH-2.0-(?:OpenSSH|dropbear)/ (RE_OPENSSH)
	"libssh_",   // libssh (not libssh2), sftp_symlink: ssh_get_openssh_version() of the server
	"WinSCP_",   // WinSCP, TSFTPFileSystem::CreateLink: the server's starts with "OpenSSH" (SFTP bug "symlink" on auto)
}

// Every other client writes OpenSSH's order whatever the server: OpenSSH's
// sftp (and scp, sshfs), pkg/sftp's Client (so rclone), paramiko, libssh2.

// draftSymlinkOrder reports whether the client that sent the SSH
// identification version writes SSH_FXP_SYMLINK in the draft's order.
func draftSymlinkOrder(version string) bool {
	software, ok := strings.CutPrefix(version, "SSH-2.0-")
	if !ok {
		return false
	}
	for _, p := range draftOrderClients {
		if strings.HasPrefix(software, p) {
			return true
		}
	}
	return false
}

const (
	fxpSymlink    = 20         // SSH_FXP_SYMLINK
	maxSFTPPacket = 256 * 1024 // pkg/sftp's maxMsgLength: it refuses longer packets
)

// draftSymlinks reads an SFTP client's packets from r and hands pkg/sftp's
// server every SSH_FXP_SYMLINK with its two paths swapped, so that a
// draft-order client's (linkpath, targetpath) arrive in the order pkg/sftp
// reads. Every other packet passes through untouched, without being
// buffered; a malformed SYMLINK passes through as it came, for pkg/sftp to
// answer.
type draftSymlinks struct {
	r    io.Reader
	left uint32 // bytes of the current packet still to pass through
	out  []byte // bytes read from r (a header, a rewritten packet) not yet returned
}

// Read implements io.Reader.
func (d *draftSymlinks) Read(p []byte) (int, error) {
	if len(d.out) == 0 && d.left == 0 {
		if err := d.next(); err != nil {
			return 0, err
		}
	}
	if len(d.out) > 0 {
		n := copy(p, d.out)
		d.out = d.out[n:]
		return n, nil
	}
	if uint32(len(p)) > d.left {
		p = p[:d.left]
	}
	n, err := d.r.Read(p)
	d.left -= uint32(n)
	return n, err
}

// next reads the header of the next packet (length, type) and, for a
// SYMLINK, the whole packet, rewritten.
func (d *draftSymlinks) next() error {
	hdr := make([]byte, 5)
	if n, err := io.ReadFull(d.r, hdr); err != nil {
		d.out = hdr[:n] // a truncated header: pkg/sftp sees it end as it did
		if n == 0 {
			return err
		}
		return nil
	}
	size := binary.BigEndian.Uint32(hdr)
	if hdr[4] != fxpSymlink || size > maxSFTPPacket {
		d.out, d.left = hdr, max(size, 1)-1
		return nil
	}
	pkt := append(hdr, make([]byte, size-1)...)
	n, err := io.ReadFull(d.r, pkt[5:])
	if err != nil {
		d.out = pkt[:5+n]
		return nil
	}
	swapSymlinkPaths(pkt[5:])
	d.out = pkt
	return nil
}

// swapSymlinkPaths swaps, in place, the two strings of a SYMLINK payload
// (uint32 id, string, string, then anything else, kept where it is). A
// payload that does not hold two strings is left alone.
func swapSymlinkPaths(payload []byte) {
	if len(payload) < 8 {
		return
	}
	rest := payload[4:]
	la := uint64(binary.BigEndian.Uint32(rest))
	if uint64(len(rest)) < 4+la+4 {
		return
	}
	lb := uint64(binary.BigEndian.Uint32(rest[4+la:]))
	end := 4 + la + 4 + lb
	if uint64(len(rest)) < end {
		return
	}
	a, b := rest[:4+la], rest[4+la:end]
	swapped := append(append(make([]byte, 0, end), b...), a...)
	copy(rest, swapped)
}
