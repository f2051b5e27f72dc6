package jail_test

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/jailgate/jailgate/jail"
	"github.com/jailgate/jailgate/jail/jailtest"
)

// TestNetworkNextToDocker: on a host with Docker's iptables-nft rules
// (table ip filter, chain FORWARD with policy drop), a nat tenant does not
// reach the internet, whatever jailgate's own table accepts: another base
// chain's drop is final. OpenNetwork says so, naming the chain and the
// rules to add to DOCKER-USER with this gateway's veth prefix; once they
// are added (as iptables-nft encodes them) the warning is gone, she
// reaches the upstream, and jailgate's own policy still keeps the
// metadata service, private ranges and the host out of her reach.
func TestNetworkNextToDocker(t *testing.T) {
	jailtest.RequireRoot(t)
	restoreIPForward(t)
	fakeInternet(t)
	name := testNetName()
	veth := jail.VethPrefix(name)
	docker := jailtest.FakeDocker(t, veth)
	// The Network's goroutines log too: read through a file, not a shared buffer.
	logFile, err := os.OpenFile(filepath.Join(t.TempDir(), "log"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	n, err := jail.OpenNetwork(jail.NetworkOptions{Name: name, Forwarding: true,
		Logger: slog.New(slog.NewTextHandler(logFile, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	b, _ := os.ReadFile(logFile.Name())
	logs := string(b)
	for _, want := range []string{"level=WARN", "ip filter FORWARD",
		"iptables -I DOCKER-USER -i " + veth + "+ -j ACCEPT",
		"iptables -I DOCKER-USER -o " + veth + "+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
		`nft insert rule ip filter DOCKER-USER iifname \"` + veth + `*\" accept`,
		`nft insert rule ip filter DOCKER-USER oifname \"` + veth + `*\" ct state related,established accept`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("OpenNetwork's log next to Docker lacks %q:\n%s", want, logs)
		}
	}
	s, err := jail.New(jail.Options{CgroupPrefix: jailtest.CgroupPrefix(t.TempDir()), KillGrace: 200 * time.Millisecond, Network: n})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	spec := newSpec(t, "alice")
	spec.Network = jail.NetworkNAT
	alice := environment(t, s, "dock-alice", spec)
	if reaches(alice, upstreamAddr+":80") {
		t.Fatalf("she reaches %s:80 through Docker's FORWARD policy drop: the fake Docker table does not drop", upstreamAddr)
	}

	docker.Allow(t, veth, true) // the iptables commands of the warning
	if blocks, err := jail.ForwardBlocks(name, ""); err != nil || len(blocks) > 0 {
		t.Errorf("with the fix in DOCKER-USER, ForwardBlocks = %v, %v; want none", blocks, err)
	}
	hostL, err := net.Listen("tcp", "0.0.0.0:0") // a host service on every address
	if err != nil {
		t.Fatal(err)
	}
	defer hostL.Close()
	go greet(hostL, "host\n")
	hostPort := itoa(hostL.Addr().(*net.TCPAddr).Port)
	hostEnd := netip.MustParseAddr(envAddr(t, alice)).Prev().String()
	for _, c := range []struct {
		addr string
		want bool
	}{
		{upstreamAddr + ":80", true},
		{metadataAddr + ":80", false},
		{private10 + ":80", false},
		{net.JoinHostPort(primaryHostAddr(t), hostPort), false},
		{net.JoinHostPort(hostEnd, hostPort), false},
	} {
		if got := reaches(alice, c.addr); got != c.want {
			t.Errorf("with the fix, she reaches %s: %v, want %v", c.addr, got, c.want)
		}
	}
}

// TestForwardBlocksHostFirewall: a host's own nftables firewall (not
// Docker's), a forward chain with policy drop that accepts only replies,
// is reported with the nft rules to add to that very chain (no iptables
// form: not iptables' table); an accept of her veths on one port only is
// not taken for the fix (a rule on a port is passed over); an accept of
// her veths is.
func TestForwardBlocksHostFirewall(t *testing.T) {
	jailtest.RequireRoot(t)
	name := testNetName()
	veth := jail.VethPrefix(name)
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "jgtest-fw-" + name})
	t.Cleanup(func() { c.DelTable(tb); c.Flush() })
	drop := nftables.ChainPolicyDrop
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	ifname := func(key expr.MetaKey, op expr.CmpOp) []expr.Any {
		return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: []byte(veth)}}
	}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	add := func(exprs ...[]expr.Any) {
		var all []expr.Any
		for _, e := range exprs {
			all = append(all, e...)
		}
		c.AddRule(&nftables.Rule{Table: tb, Chain: fwd, Exprs: append(all, &expr.Counter{}, accept)})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// The host's other forwarded traffic (other tests' gateways) passes.
	add(ifname(expr.MetaKeyIIFNAME, expr.CmpOpNeq), ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq))
	established := binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
	add([]expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: established, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)}})
	blocks := func() []jail.ForwardBlock {
		t.Helper()
		var mine []jail.ForwardBlock
		all, err := jail.ForwardBlocks(name, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range all {
			if b.Table == tb.Name {
				mine = append(mine, b)
			}
		}
		return mine
	}
	got := blocks()
	if len(got) != 1 || got[0].String() != "inet "+tb.Name+" forward" || got[0].IPTables() != nil ||
		got[0].NFT()[0] != "nft insert rule inet "+tb.Name+" forward iifname \""+veth+"*\" accept" {
		t.Fatalf("ForwardBlocks next to a host firewall = %+v (nft %q), want inet %s forward", got, fixes(got), tb.Name)
	}
	add(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq), []expr.Any{ // tcp dport 80
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 80}}})
	if got := blocks(); len(got) != 1 {
		t.Errorf("with her veths accepted on port 80 only, ForwardBlocks = %+v, want the chain still", got)
	}
	add(ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq))
	if got := blocks(); len(got) != 0 {
		t.Errorf("with her veths accepted, ForwardBlocks = %+v, want none", got)
	}
}

// fixes is each block's nft fix.
func fixes(blocks []jail.ForwardBlock) [][]string {
	var out [][]string
	for _, b := range blocks {
		out = append(out, b.NFT())
	}
	return out
}
