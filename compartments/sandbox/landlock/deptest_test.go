package landlock

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies fails if the package compartment programs link pulls in
// container runtime code.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/opencontainers/",
		"github.com/containerd/",
		"github.com/e2sgate/e2sgate/compartments/sandbox/netns",
		"github.com/e2sgate/e2sgate/compartments/sandbox/bpfguard",
	}
	for _, dep := range strings.Fields(string(out)) {
		// The runtimes' package itself, of which this one is a sub-package.
		if dep == "github.com/e2sgate/e2sgate/compartments/sandbox" {
			t.Errorf("compartments/sandbox/landlock depends on %s", dep)
		}
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("compartments/sandbox/landlock depends on %s", dep)
			}
		}
	}
}
