package netns

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/e2sgate/e2sgate/compartments/sandbox"
)

// TableName is the nftables table (family inet) that holds a compartment's
// ruleset inside its own namespace.
const TableName = "e2s"

// addRuleset queues the compartment's whole ruleset on c: everything that
// was in the namespace is flushed, then input, output and forward chains
// with policy drop are added. Output accepts only established/related
// traffic, the namespace's own loopback (when it has one up) and the
// endpoints of n.Allow; input accepts only established/related traffic and
// loopback. Neighbour discovery is let through on a veth so that IPv6
// endpoints are reachable at all. The order of the messages is fixed, so
// the result can be compared byte for byte with a golden file.
func addRuleset(c *nftables.Conn, n sandbox.Network) error {
	c.FlushRuleset()
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
	chain := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		drop := nftables.ChainPolicyDrop
		return c.AddChain(&nftables.Chain{
			Name:     name,
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  hook,
			Priority: nftables.ChainPriorityFilter,
			Policy:   &drop,
		})
	}
	in := chain("input", nftables.ChainHookInput)
	out := chain("output", nftables.ChainHookOutput)
	chain("forward", nftables.ChainHookForward)

	rule := func(ch *nftables.Chain, exprs ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(exprs, accept())})
	}
	if n.Mode != sandbox.NetNone {
		rule(in, ifname(expr.MetaKeyIIFNAME, "lo")...)
		rule(out, ifname(expr.MetaKeyOIFNAME, "lo")...)
	}
	rule(in, established()...)
	rule(out, established()...)
	if n.Mode == sandbox.NetVeth {
		rule(in, neighbourDiscovery()...)
		rule(out, neighbourDiscovery()...)
	}
	for _, e := range n.Allow {
		dst, err := daddr(e.Prefix)
		if err != nil {
			return err
		}
		if e.Port == 0 {
			rule(out, dst...)
			continue
		}
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			rule(out, append(dst[:len(dst):len(dst)], dport(proto, e.Port)...)...)
		}
	}
	return nil
}

func accept() expr.Any { return &expr.Verdict{Kind: expr.VerdictAccept} }

func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

// established matches `ct state established,related`.
func established() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
			Xor:  []byte{0, 0, 0, 0},
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

// neighbourDiscovery matches ICMPv6 router/neighbour solicitations and
// advertisements (types 133 to 136).
func neighbourDiscovery() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{133}, ToData: []byte{136}},
	}
}

// daddr matches `ip daddr P` or `ip6 daddr P`.
func daddr(p netip.Prefix) ([]expr.Any, error) {
	if !p.IsValid() {
		return nil, fmt.Errorf("endpoint %v: %w", p, ErrInvalid)
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	proto, offset := byte(unix.NFPROTO_IPV4), uint32(16)
	if p.Addr().Is6() {
		proto, offset = unix.NFPROTO_IPV6, 24
	}
	addr := p.Addr().AsSlice()
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(addr))},
	}
	if p.Bits() < len(addr)*8 {
		mask := make([]byte, len(addr))
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		exprs = append(exprs, &expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: uint32(len(addr)),
			Mask: mask, Xor: make([]byte, len(addr)),
		})
	}
	return append(exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr}), nil
}

// dport matches `meta l4proto P th dport N`.
func dport(proto byte, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	}
}
