package gateway

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// quickAckConn re-arms TCP_QUICKACK before every read. Linux leaves
// quick-ACK mode on its own after a few segments and then delays an ACK by
// up to 40 ms; during the SSH handshake the client sends a small packet
// (NEWKEYS, SERVICE_REQUEST) and waits, with Nagle holding its next one,
// until that ACK comes: a measured 112 → 60 ms for `ssh host true`. The
// flag is one setsockopt per read, nothing next to the read itself.
type quickAckConn struct {
	net.Conn
	raw syscall.RawConn
}

// quickAck wraps a TCP connection so that its reads re-arm TCP_QUICKACK;
// other connections are returned unchanged.
func quickAck(nc net.Conn) net.Conn {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return nc
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nc
	}
	return &quickAckConn{Conn: nc, raw: raw}
}

// Read implements net.Conn.
func (c *quickAckConn) Read(p []byte) (int, error) {
	c.raw.Control(func(fd uintptr) {
		// Best effort: a failure only costs the delay this avoids.
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
	return c.Conn.Read(p)
}
