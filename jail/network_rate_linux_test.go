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

// rateBytes is what TestNetworkNATRate moves each way: about 3 seconds
// at 50Mbit.
const rateBytes = 20 << 20

// TestNetworkNATRate: limits.net_rate 50Mbit caps a transfer from the
// fake internet to her, and one from her to it, within ±15% (payload
// bits over time; headers are ~4% of the wire).
func TestNetworkNATRate(t *testing.T) {
	s, _ := natSupervisor(t)
	ns := fakeInternet(t)
	var src, sink net.Listener
	inNetns(t, ns, func() (err error) { src, err = net.Listen("tcp", upstreamAddr+":9001"); return err })
	inNetns(t, ns, func() (err error) { sink, err = net.Listen("tcp", upstreamAddr+":9002"); return err })
	defer src.Close()
	defer sink.Close()
	go serveConns(src, func(c net.Conn) { io.CopyN(c, zeros{}, rateBytes) })
	go serveConns(sink, func(c net.Conn) { io.Copy(io.Discard, c); c.Write([]byte("done")) })

	const rate = 50e6
	spec := newSpec(t, "alice")
	spec.Network = jail.NetworkNAT
	spec.Limits.NetRate = rate
	env := environment(t, s, "nat-rate", spec)
	dial := func(addr string) net.Conn {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := env.Dial(ctx, "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	check := func(dir string, n int64, d time.Duration) {
		got := float64(n*8) / d.Seconds()
		t.Logf("%s: %d bytes in %v: %.1f Mbit/s", dir, n, d.Round(time.Millisecond), got/1e6)
		if got < rate*0.85 || got > rate*1.15 {
			t.Errorf("%s: %.1f Mbit/s, want 50 ±15%%", dir, got/1e6)
		}
	}

	c := dial(upstreamAddr + ":9001")
	begin := time.Now()
	n, err := io.Copy(io.Discard, c)
	c.Close()
	if err != nil || n != rateBytes {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	check("to her", n, time.Since(begin))

	c = dial(upstreamAddr + ":9002")
	defer c.Close()
	begin = time.Now()
	if _, err := io.CopyN(c, zeros{}, rateBytes); err != nil {
		t.Fatal(err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	reply, _ := io.ReadAll(c)
	if !bytes.Equal(reply, []byte("done")) {
		t.Fatalf("upload: the sink answered %q", reply)
	}
	check("from her", rateBytes, time.Since(begin))
}

// serveConns runs serve on each connection l accepts, closing it after.
func serveConns(l net.Listener, serve func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() { defer c.Close(); serve(c) }()
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
