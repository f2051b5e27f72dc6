package jail_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jailgate/jailgate/jail"
)

// TestNetworkNATCounters: the operator sees what a tenant moves and what
// policy refuses her. After she reads n bytes from the upstream and is
// refused at the metadata service, her counters read at least n bytes in
// and one dropped packet; another tenant's are his own.
func TestNetworkNATCounters(t *testing.T) {
	s, _, name := natSupervisorNamed(t)
	ns := fakeInternet(t)
	const n = 1 << 20
	var l net.Listener
	inNetns(t, ns, func() (err error) { l, err = net.Listen("tcp", "0.0.0.0:0"); return err })
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write(bytes.Repeat([]byte{'x'}, n))
			c.Close()
		}
	}()

	spec := newSpec(t, "alice")
	spec.Network = jail.NetworkNAT
	alice := environment(t, s, "counters-alice", spec)
	bobSpec := newSpec(t, "bob")
	bobSpec.Network = jail.NetworkNAT
	environment(t, s, "counters-bob", bobSpec)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := alice.Dial(ctx, "tcp", net.JoinHostPort(upstreamAddr, itoa(l.Addr().(*net.TCPAddr).Port)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.Copy(io.Discard, c)
	c.Close()
	if err != nil || got != n {
		t.Fatalf("she read %d bytes (%v), want %d", got, err, n)
	}
	if reaches(alice, metadataAddr+":80") {
		t.Fatal("she reaches the metadata service")
	}

	stats, err := jail.TenantNetStats(name)
	if err != nil {
		t.Fatal(err)
	}
	a := stats["alice"]
	t.Logf("her counters: %+v", a)
	if a.BytesIn < n || a.BytesOut == 0 || a.Dropped < 1 {
		t.Errorf("her counters %+v, want >= %d bytes in, some out, >= 1 dropped", a, n)
	}
	if b := stats["bob"]; b.BytesIn >= n || b.Dropped != 0 {
		t.Errorf("his counters %+v hold her traffic", b)
	}
	if none, err := jail.TenantNetStats(testNetName()); err != nil || len(none) != 0 {
		t.Errorf("a gateway without a table: %v, %v; want no counters", none, err)
	}
}
