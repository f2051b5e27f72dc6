package jailtest

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// FakeDockerTable is Docker's iptables-nft layout built by FakeDocker.
type FakeDockerTable struct {
	conn   *nftables.Conn
	filter *nftables.Table
	user   *nftables.Chain // DOCKER-USER
}

// FakeDocker builds, with the nftables library (this host has neither
// iptables nor nft), what Docker's iptables-nft rules make on a host,
// for a bridge that does not exist, and removes it when the test ends
// (even on failure):
//
//	table ip filter {
//	  chain FORWARD { type filter hook forward priority filter; policy drop;
//	    iifname "jg*" iifname != "VETH*" accept     (not Docker's: see below)
//	    oifname "jg*" oifname != "VETH*" accept
//	    jump DOCKER-USER
//	    jump DOCKER-ISOLATION-STAGE-1
//	    oifname BR ct state related,established accept
//	    oifname BR jump DOCKER
//	    iifname BR oifname != BR accept
//	    iifname BR oifname BR accept }
//	  chain DOCKER-USER { return }
//	  chain DOCKER-ISOLATION-STAGE-1 { iifname BR oifname != BR jump DOCKER-ISOLATION-STAGE-2; return }
//	  chain DOCKER-ISOLATION-STAGE-2 { oifname BR drop; return }
//	  chain DOCKER { }
//	}
//	table ip nat {
//	  chain POSTROUTING { type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr 172.17.0.0/16 oifname != BR masquerade }
//	}
//
// Its drop policy holds for every forwarded packet of the host, so the
// first two rules let through the veths of the other gateways (jg*) that
// other tests on this host run meanwhile; the gateway whose veth prefix is
// veth (jail.VethPrefix) meets Docker's rules alone. It fails the test if
// the host has an ip filter or ip nat table already (a real one).
func FakeDocker(t testing.TB, veth string) *FakeDockerTable {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"filter", "nat"} {
		if tb, err := c.ListTableOfFamily(name, nftables.TableFamilyIPv4); err == nil && tb != nil {
			t.Fatalf("this host has a table ip %s already: the test would replace it", name)
		}
	}
	d := &FakeDockerTable{conn: c, filter: &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"}}
	nat := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "nat"}
	t.Cleanup(func() {
		for _, tb := range []*nftables.Table{d.filter, nat} {
			c.DelTable(tb)
			if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
				t.Errorf("remove the fake Docker table ip %s: %v", tb.Name, err)
			}
		}
	})
	var rnd [2]byte
	rand.Read(rnd[:])
	br := "dockert" + hex.EncodeToString(rnd[:]) // a bridge that does not exist
	d.build(br, veth)
	c.AddTable(nat)
	post := c.AddChain(&nftables.Chain{Name: "POSTROUTING", Table: nat, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: policy(nftables.ChainPolicyAccept)})
	_, docker, _ := net.ParseCIDR("172.17.0.0/16")
	c.AddRule(&nftables.Rule{Table: nat, Chain: post, Exprs: join(
		[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: docker.Mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: docker.IP.To4()}},
		ifIs(expr.MetaKeyOIFNAME, expr.CmpOpNeq, br, true), []expr.Any{&expr.Counter{}, &expr.Masq{}})})
	if err := c.Flush(); err != nil {
		t.Fatalf("build the fake Docker tables: %v", err)
	}
	return d
}

// build adds table ip filter and its chains (FakeDocker's layout).
func (d *FakeDockerTable) build(br, veth string) {
	c, tb := d.conn, d.filter
	c.AddTable(tb)
	forward := c.AddChain(&nftables.Chain{Name: "FORWARD", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: policy(nftables.ChainPolicyDrop)})
	d.user = c.AddChain(&nftables.Chain{Name: "DOCKER-USER", Table: tb})
	stage1 := c.AddChain(&nftables.Chain{Name: "DOCKER-ISOLATION-STAGE-1", Table: tb})
	stage2 := c.AddChain(&nftables.Chain{Name: "DOCKER-ISOLATION-STAGE-2", Table: tb})
	docker := c.AddChain(&nftables.Chain{Name: "DOCKER", Table: tb})
	rule := func(ch *nftables.Chain, parts ...[]expr.Any) {
		c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: join(parts...)})
	}
	accept, ret := verdict(expr.VerdictAccept, ""), verdict(expr.VerdictReturn, "")
	for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} { // other tests' gateways
		rule(forward, ifIs(key, expr.CmpOpEq, "jg", false), ifIs(key, expr.CmpOpNeq, veth, false), accept)
	}
	rule(forward, verdict(expr.VerdictJump, d.user.Name))
	rule(forward, verdict(expr.VerdictJump, stage1.Name))
	rule(forward, ifIs(expr.MetaKeyOIFNAME, expr.CmpOpEq, br, true), ctEstablished(), accept)
	rule(forward, ifIs(expr.MetaKeyOIFNAME, expr.CmpOpEq, br, true), verdict(expr.VerdictJump, docker.Name))
	rule(forward, ifIs(expr.MetaKeyIIFNAME, expr.CmpOpEq, br, true), ifIs(expr.MetaKeyOIFNAME, expr.CmpOpNeq, br, true), accept)
	rule(forward, ifIs(expr.MetaKeyIIFNAME, expr.CmpOpEq, br, true), ifIs(expr.MetaKeyOIFNAME, expr.CmpOpEq, br, true), accept)
	rule(d.user, ret)
	rule(stage1, ifIs(expr.MetaKeyIIFNAME, expr.CmpOpEq, br, true), ifIs(expr.MetaKeyOIFNAME, expr.CmpOpNeq, br, true),
		verdict(expr.VerdictJump, stage2.Name))
	rule(stage1, ret)
	rule(stage2, ifIs(expr.MetaKeyOIFNAME, expr.CmpOpEq, br, true), verdict(expr.VerdictDrop, ""))
	rule(stage2, ret)
}

// Allow adds, as the operator would, what jailgate's warning asks for,
// at the top of DOCKER-USER. With iptables true, in iptables-nft's
// encoding (its conntrack match is the xtables one, run by nft_compat):
//
//	iptables -I DOCKER-USER -i VETH+ -j ACCEPT
//	iptables -I DOCKER-USER -o VETH+ -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//
// else as nft's:
//
//	nft insert rule ip filter DOCKER-USER iifname "VETH*" accept
//	nft insert rule ip filter DOCKER-USER oifname "VETH*" ct state related,established accept
func (d *FakeDockerTable) Allow(t testing.TB, veth string, iptables bool) {
	t.Helper()
	established := ctEstablished()
	if iptables {
		established = []expr.Any{&expr.Match{Name: "conntrack", Rev: 3, Info: &xt.ConntrackMtinfo3{
			ConntrackMtinfo2: xt.ConntrackMtinfo2{
				ConntrackMtinfoBase: xt.ConntrackMtinfoBase{MatchFlags: uint16(xt.ConntrackState)},
				StateMask:           uint16(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)}}}}
	}
	accept := verdict(expr.VerdictAccept, "")
	for _, exprs := range [][]expr.Any{
		join(ifIs(expr.MetaKeyIIFNAME, expr.CmpOpEq, veth, false), accept),
		join(ifIs(expr.MetaKeyOIFNAME, expr.CmpOpEq, veth, false), established, accept),
	} {
		d.conn.InsertRule(&nftables.Rule{Table: d.filter, Chain: d.user, Exprs: exprs})
	}
	if err := d.conn.Flush(); err != nil {
		t.Fatalf("add the fix to DOCKER-USER: %v", err)
	}
}

func policy(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

func verdict(k expr.VerdictKind, chain string) []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: k, Chain: chain}}
}

// ifIs compares an interface name: whole (nft's "docker0", NUL ended) or
// a prefix (iptables' "jg+", nft's "jg*").
func ifIs(key expr.MetaKey, op expr.CmpOp, name string, whole bool) []expr.Any {
	data := []byte(name)
	if whole {
		data = append(data, 0)
	}
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: data}}
}

func ctEstablished() []expr.Any {
	bits := binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
	return []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: bits, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)}}
}

func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
