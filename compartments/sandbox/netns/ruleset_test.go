package netns

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/e2sgate/e2sgate/compartments/sandbox"
)

var update = flag.Bool("update", false, "rewrite the netlink goldens in testdata/")

// rulesetCases are the networks whose rulesets are pinned byte for byte.
var rulesetCases = []struct {
	name string
	net  sandbox.Network
}{
	{"none", sandbox.Network{Mode: sandbox.NetNone}},
	{"loopback", sandbox.Network{Mode: sandbox.NetLoopback}},
	{"inside", sandbox.Network{
		Mode:    sandbox.NetVeth,
		Address: netip.MustParsePrefix("10.77.0.2/24"),
		Allow: []sandbox.Endpoint{
			{Prefix: netip.MustParsePrefix("10.77.0.10/32"), Port: 5432},
			{Prefix: netip.MustParsePrefix("10.77.1.0/24")},
			{Prefix: netip.MustParsePrefix("2001:db8::10/128"), Port: 443},
			{Prefix: netip.MustParsePrefix("::ffff:10.77.2.0/120"), Port: 53},
		},
	}},
}

// dumpRuleset renders the netlink messages addRuleset sends, one per line:
// message type, flags and payload in hex. Sequence numbers and port ids
// (which the netlink layer picks) are left out; everything else is exact.
func dumpRuleset(t *testing.T, n sandbox.Network) []byte {
	t.Helper()
	var out bytes.Buffer
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		for _, m := range req {
			fmt.Fprintf(&out, "%04x %04x %x\n", uint16(m.Header.Type), uint16(m.Header.Flags), m.Data)
		}
		return req, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := addRuleset(c, n); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestRulesetGolden needs no privileges: it pins the exact netlink bytes of
// each ruleset. Run with -update after a deliberate change and review the
// diff (TestRulesetKernel checks what the bytes do).
func TestRulesetGolden(t *testing.T) {
	for _, tc := range rulesetCases {
		t.Run(tc.name, func(t *testing.T) {
			got := dumpRuleset(t, tc.net)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("ruleset for %s differs from %s:\ngot:\n%s\nwant:\n%s", tc.name, path, got, want)
			}
		})
	}
}

func TestRulesetRejectsInvalidEndpoint(t *testing.T) {
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) { return req, nil }))
	if err != nil {
		t.Fatal(err)
	}
	err = addRuleset(c, sandbox.Network{Mode: sandbox.NetLoopback, Allow: []sandbox.Endpoint{{}}})
	if err == nil {
		t.Fatal("invalid endpoint accepted")
	}
}
