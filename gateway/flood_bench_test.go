package gateway_test

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jailgate/jailgate/config"
	"github.com/jailgate/jailgate/gateway/gatewaytest"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// floodConns is how many connections the flood benchmark's tenant makes:
// enough that max_tenant_channels, not max_channels, is what stops her.
const floodConns = 3

// BenchmarkChannelFlood is issue 16 item 4's attack under the default
// caps: each of her connections opens 500 session channels whose command
// reads nothing and sends 2 MiB (one window) into each, then 3000 ssh -L
// channels to a destination that never reads, sending 2 MiB into each too.
// Before the caps, one such connection took the gateway from 23 MB to
// 1.19 GB and 3000 fds. It reports the live heap and the fds this process
// gained (the client's share is small: it buffers nothing it sends), and
// fails if the heap exceeds the documented bound, max_tenant_channels ×
// the 2 MiB window (256 MiB), plus 64 MiB for everything else.
func BenchmarkChannelFlood(b *testing.B) {
	for range b.N {
		heap, fds, open := channelFlood(b)
		b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(fds), "fds")
		b.ReportMetric(float64(open), "channels")
		if bound := int64(config.DefaultMaxTenantChannels)*2<<20 + 64<<20; heap > bound {
			b.Errorf("the gateway holds %d MiB under the flood, over the bound of %d MiB", heap>>20, bound>>20)
		}
		if open > config.DefaultMaxTenantChannels {
			b.Errorf("%d channels open, over max_tenant_channels %d", open, config.DefaultMaxTenantChannels)
		}
	}
}

// channelFlood runs the attack once against a fresh gateway and returns
// the live heap and the fds gained while it holds, and the channels open.
func channelFlood(b *testing.B) (heap int64, fds, open int) {
	port := strconv.Itoa(silentListener(b))
	signer, pub := gatewaytest.NewKey(b)
	u := gatewaytest.User("alice", pub)
	u.Forwarding.Local = true
	cfg := gatewaytest.Config(u)
	cfg.Server.MaxChannels, cfg.Server.MaxTenantChannels = config.DefaultMaxChannels, config.DefaultMaxTenantChannels
	h := gatewaytest.Start(b, cfg, &jailtest.HostManager{})
	heap0, fds0 := liveHeap(), openFDs()
	chunk := bytes.Repeat([]byte("x"), 2<<20)
	var sent sync.WaitGroup
	send := func(w interface{ Write([]byte) (int, error) }) {
		sent.Add(1)
		go func() { defer sent.Done(); w.Write(chunk) }()
	}
	for range floodConns {
		c, err := gatewaytest.Dial(b, h.Addr, "alice", signer)
		if err != nil {
			b.Fatal(err)
		}
		for range 500 {
			s, err := c.NewSession()
			if err != nil {
				continue
			}
			in, _ := s.StdinPipe()
			if err := s.Start("sleep 60"); err != nil {
				b.Fatal(err)
			}
			open++
			send(in)
		}
		for range 3000 {
			fc, err := c.Dial("tcp", "localhost:"+port)
			if err != nil {
				continue
			}
			b.Cleanup(func() { fc.Close() })
			open++
			send(fc)
		}
	}
	settle(&sent)
	return liveHeap() - heap0, openFDs() - fds0, open
}

// settle waits for the writes to finish (or stall against a full window).
func settle(sent *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { sent.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// liveHeap is the heap in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// openFDs counts this process's open file descriptors.
func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}
