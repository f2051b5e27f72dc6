package jail_test

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/jailgate/jailgate/jail"
)

// testName is the one name the fake internet's resolver answers, with
// testNameAddr.
const (
	testName     = "mirror.jailgate.test."
	testNameAddr = "198.51.100.77"
)

// serveDNS runs a resolver on UDP port 53 of addr inside ns that answers
// an A query for testName and refuses every other.
func serveDNS(t *testing.T, ns, addr string) {
	t.Helper()
	var pc net.PacketConn
	inNetns(t, ns, func() (err error) { pc, err = net.ListenPacket("udp", net.JoinHostPort(addr, "53")); return err })
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp, err := answer(buf[:n]); err == nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
}

// answer builds the response to one query.
func answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	h.Response, h.Authoritative, h.RecursionAvailable = true, true, true
	known := strings.EqualFold(q.Name.String(), testName)
	if !known {
		h.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if known && q.Type == dnsmessage.TypeA {
		a := netip.MustParseAddr(testNameAddr).As4()
		rh := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60}
		if err := b.AResource(rh, dnsmessage.AResource{A: a}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// TestNetworkNATDNS: with dns: [a resolver of the fake internet], her
// /etc/resolv.conf names it and a name it serves resolves inside (getent
// through her libc, port 53 opened past the default deny list); a name
// it does not serve does not.
func TestNetworkNATDNS(t *testing.T) {
	s, _ := natSupervisor(t)
	ns := fakeInternet(t)
	serveDNS(t, ns, upstreamAddr)
	spec := newSpec(t, "alice", "getent")
	spec.Network = jail.NetworkNAT
	spec.DNS = []netip.Addr{netip.MustParseAddr(upstreamAddr)}
	// A from-host test tree says "hosts: files" (rootfs.FromHost writes
	// it); an image's says "files dns", as here.
	nss := filepath.Join(spec.Rootfs, "etc", "nsswitch.conf")
	if err := os.WriteFile(nss, []byte("passwd: files\ngroup: files\nhosts: files dns\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := environment(t, s, "nat-dns", spec)

	if got := sh(t, env, "cat /etc/resolv.conf"); !strings.Contains(got, "nameserver "+upstreamAddr+"\n") {
		t.Errorf("her resolv.conf:\n%s\nwant nameserver %s", got, upstreamAddr)
	}
	got := sh(t, env, "getent ahostsv4 "+strings.TrimSuffix(testName, ".")+" | head -1")
	if f := strings.Fields(got); len(f) == 0 || f[0] != testNameAddr {
		t.Errorf("getent in her environment: %q, want %s", got, testNameAddr)
	}
	if out, st := shStatus(t, env, "getent hosts nowhere.jailgate.test"); st.Code == 0 {
		t.Errorf("an unknown name resolved: %q", out)
	}
}
