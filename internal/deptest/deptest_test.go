// Package deptest fails when a program links what its image must not hold:
// each compartment image carries only its own code.
package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/e2sgate/e2sgate/"

func TestProgramsLinkOnlyTheirOwnCode(t *testing.T) {
	forbidden := map[string][]string{
		"cmd/outside":    {"compartments/keyhandler", "compartments/purchasing", "compartments/payment", "inside", "gateagent", "internal/supervisor", "compartments/sandbox"},
		"cmd/purchasing": {"compartments/keyhandler", "compartments/payment", "outside", "gateagent", "internal/supervisor", "compartments/sandbox"},
		"cmd/payment":    {"compartments/keyhandler", "compartments/purchasing", "outside", "gateagent", "internal/supervisor"},
		"cmd/keyhandler": {"compartments/purchasing", "compartments/payment", "outside", "gateagent", "internal/supervisor"},
		"cmd/inside":     {"compartments/keyhandler", "compartments/purchasing", "compartments/payment", "outside", "gateagent"},
		"cmd/e2sgated":   {"compartments/keyhandler", "compartments/purchasing", "compartments/payment", "internal/cms"},
	}
	for prog, bad := range forbidden {
		t.Run(prog, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "../../"+prog).CombinedOutput()
			if err != nil {
				t.Fatalf("go list %s: %v\n%s", prog, err, out)
			}
			deps := map[string]bool{}
			for _, d := range strings.Fields(string(out)) {
				deps[d] = true
			}
			if !deps[mod+"compartments/protocol"] && prog != "cmd/e2sgated" {
				t.Fatalf("%s does not link the protocol; the dependency list is wrong", prog)
			}
			for _, b := range bad {
				if deps[mod+b] {
					t.Errorf("%s links %s", prog, b)
				}
			}
		})
	}
}
