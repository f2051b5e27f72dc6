//go:build !linux

package gateway

import "net"

// quickAck is Linux's delayed-ACK workaround; elsewhere it does nothing.
func quickAck(nc net.Conn) net.Conn { return nc }
