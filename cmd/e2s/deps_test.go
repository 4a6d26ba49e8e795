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
	forbidden := []string{"compartments/", "gateagent", "outside", "inside", "filters", "policies", "internal/supervisor", "internal/config", "internal/admin"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, mod+f) {
				t.Errorf("e2s links %s", dep)
			}
		}
	}
}
