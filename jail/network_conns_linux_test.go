package jail_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jailgate/jailgate/jail"
)

// TestNetworkNATConnections is the conntrack exhaustion attack: a tenant
// opens connection after connection until the host's conntrack table is
// full. With limits.connections: 5 she holds 5 connections open to the
// upstream and the 6th does not open, while another tenant still
// connects; once she closes hers, she connects again.
func TestNetworkNATConnections(t *testing.T) {
	s, _ := natSupervisor(t)
	ns := fakeInternet(t)
	var l net.Listener
	inNetns(t, ns, func() (err error) { l, err = net.Listen("tcp", "0.0.0.0:0"); return err })
	defer l.Close()
	go hold(l)
	addr := net.JoinHostPort(upstreamAddr, itoa(l.Addr().(*net.TCPAddr).Port))

	spec := newSpec(t, "alice")
	spec.Network = jail.NetworkNAT
	spec.Limits.Connections = 5
	alice := environment(t, s, "conns-alice", spec)
	bobSpec := newSpec(t, "bob")
	bobSpec.Network = jail.NetworkNAT
	bob := environment(t, s, "conns-bob", bobSpec)

	var held []net.Conn
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := alice.Dial(ctx, "tcp", addr)
		cancel()
		if err != nil {
			t.Fatalf("her connection %d of 5: %v", i+1, err)
		}
		held = append(held, c)
	}
	if reaches(alice, addr) {
		t.Errorf("her 6th connection opened past limits.connections: 5")
	}
	if !reaches(bob, addr) {
		t.Errorf("another tenant does not connect while she is at her limit")
	}
	for _, c := range held {
		c.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !reaches(alice, addr) {
		if time.Now().After(deadline) {
			t.Fatal("she does not connect again after closing her connections")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hold keeps every connection l accepts open until its client closes it.
func hold(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			io.Copy(io.Discard, c)
			c.Close()
		}()
	}
}
