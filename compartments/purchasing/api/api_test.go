package api

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNothingOfTheModule: the e2s client links this package, so it
// must pull in none of the appliance's code (the standard library only).
func TestLinksNothingOfTheModule(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const self = "github.com/e2sgate/e2sgate/compartments/purchasing/api"
	for _, dep := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(dep, "/")
		if strings.Contains(first, ".") && dep != self { // not the standard library (crypto/internal/fips140/v1.0.0 is)
			t.Errorf("api links %s", dep)
		}
	}
}
