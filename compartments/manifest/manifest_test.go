package manifest_test

import (
	"slices"
	"testing"

	_ "github.com/e2sgate/e2sgate/compartments/builtins"
	"github.com/e2sgate/e2sgate/compartments/manifest"
)

// The start order the appliance has always used: keys first, the web front
// last.
func TestBuiltinsStartOrder(t *testing.T) {
	want := []string{"keyhandler", "payment", "inside", "purchasing", "outside"}
	if got := manifest.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
}

func TestBuiltinsAreComplete(t *testing.T) {
	uids := map[int]string{}
	for _, m := range manifest.All() {
		t.Run(m.Name, func(t *testing.T) {
			if m.UID < 1000 || m.GID < 1000 || m.Label == "" || m.Limits.MemoryMB < 16 || m.Limits.Pids < 8 || m.Limits.CPUPercent < 1 {
				t.Errorf("incomplete defaults: %+v", m)
			}
			if !slices.Contains([]manifest.Network{manifest.NetNone, manifest.NetLoopback, manifest.NetVeth}, m.Network) {
				t.Errorf("network %q", m.Network)
			}
			if len(m.Code) == 0 {
				t.Error("no code packages: the link rules cannot keep others from linking it")
			}
			if m.SocksVia != "" && manifest.Lookup(m.SocksVia) == nil {
				t.Errorf("SOCKS via unknown compartment %q", m.SocksVia)
			}
			if other, dup := uids[m.UID]; dup {
				t.Errorf("uid %d is also %s's", m.UID, other)
			}
			uids[m.UID] = m.Name
		})
	}
}

func TestSocksCallers(t *testing.T) {
	if got := manifest.SocksCallers("inside"); !slices.Equal(got, []string{"payment"}) {
		t.Fatalf("SocksCallers(inside) = %v", got)
	}
}

func TestForbidden(t *testing.T) {
	bad := manifest.Lookup("purchasing").Forbidden()
	for _, p := range []string{"gateagent", "compartments/keyhandler", "compartments/payment", "inside", "outside"} {
		if !slices.Contains(bad, p) {
			t.Errorf("purchasing may link %s", p)
		}
	}
	if slices.Contains(bad, "compartments/purchasing") {
		t.Error("purchasing may not link its own code")
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	manifest.Register(&manifest.Manifest{Name: "keyhandler"})
}
