package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoApplianceCode: the client is installed on partners' machines
// and must hold none of the appliance's server code.
func TestLinksNoApplianceCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/e2sgate/e2sgate/"
	forbidden := []string{"compartments/", "gateagent", "outside", "inside", "filters", "policies", "internal/daemon/supervisor", "internal/daemon/config", "internal/daemon/admin"}
	// The purchasing wire types are types only (their package has a test
	// that it links nothing of the module).
	allowed := map[string]bool{mod + "compartments/purchasing/api": true}
	for _, dep := range strings.Fields(string(out)) {
		if allowed[dep] {
			continue
		}
		for _, f := range forbidden {
			if strings.HasPrefix(dep, mod+f) {
				t.Errorf("e2s links %s", dep)
			}
		}
	}
}
