package api

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNothingOfTheModule: the e2s client links this package, so it
// must hold types only and pull in none of the appliance's code.
func TestLinksNothingOfTheModule(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const self = "github.com/e2sgate/e2sgate/compartments/purchasing/api"
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, ".") && dep != self {
			t.Errorf("api links %s", dep)
		}
	}
}
