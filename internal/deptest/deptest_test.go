// Package deptest fails when a program links what its image must not hold:
// each compartment image carries only its own code. The rules come from the
// compartments' manifests (compartments/manifest).
package deptest

import (
	"os/exec"
	"strings"
	"testing"

	_ "github.com/e2sgate/e2sgate/compartments/builtins"
	"github.com/e2sgate/e2sgate/compartments/manifest"
)

const mod = "github.com/e2sgate/e2sgate/"

// deps lists the packages prog (module-relative) links.
func deps(t *testing.T, prog string) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "../../"+prog).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", prog, err, out)
	}
	d := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		d[p] = true
	}
	return d
}

// rules is, per program, what it must not link: each compartment's program
// none of the other compartments' code nor what its manifest forbids; the
// supervisor's program no compartment's code and no CMS.
func rules() map[string][]string {
	r := map[string][]string{}
	daemon := []string{"internal/document/cms"}
	for _, m := range manifest.All() {
		r[m.Program()] = m.Forbidden()
		daemon = append(daemon, m.Code...)
	}
	r["cmd/e2sgated"] = daemon
	return r
}

func TestProgramsLinkOnlyTheirOwnCode(t *testing.T) {
	for prog, bad := range rules() {
		t.Run(prog, func(t *testing.T) {
			deps := deps(t, prog)
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

// The web front reads its defaults from its own declaration: it links
// neither the appliance's config package nor a YAML decoder.
func TestOutsideLinksNoConfig(t *testing.T) {
	deps := deps(t, "cmd/outside")
	for _, bad := range []string{mod + "internal/daemon/config", "gopkg.in/yaml.v3", "go.yaml.in/yaml/v3"} {
		if deps[bad] {
			t.Errorf("cmd/outside links %s", bad)
		}
	}
}

// The rules derived from the manifests are at least the ones written out
// by hand before the manifests existed.
func TestRulesCoverTheOriginalOnes(t *testing.T) {
	original := map[string][]string{
		"cmd/outside":    {"compartments/keyhandler", "compartments/purchasing", "compartments/payment", "inside", "gateagent", "internal/daemon/supervisor", "compartments/sandbox"},
		"cmd/purchasing": {"compartments/keyhandler", "compartments/payment", "outside", "gateagent", "internal/daemon/supervisor", "compartments/sandbox"},
		"cmd/payment":    {"compartments/keyhandler", "compartments/purchasing", "outside", "gateagent", "internal/daemon/supervisor"},
		"cmd/keyhandler": {"compartments/purchasing", "compartments/payment", "outside", "gateagent", "internal/daemon/supervisor"},
		"cmd/inside":     {"compartments/keyhandler", "compartments/purchasing", "compartments/payment", "outside", "gateagent"},
		"cmd/e2sgated":   {"compartments/keyhandler", "compartments/purchasing", "compartments/payment", "internal/document/cms"},
	}
	r := rules()
	for prog, bad := range original {
		have := map[string]bool{}
		for _, b := range r[prog] {
			have[b] = true
		}
		for _, b := range bad {
			if !have[b] {
				t.Errorf("%s: rule %q lost", prog, b)
			}
		}
	}
}

// Test rigs and tools stay out of every program; the simulators' code
// stays out of the appliance's programs (only cmd/acquirer and
// cmd/backoffice are simulators).
func TestProgramsLinkNoTestRigs(t *testing.T) {
	progs, err := exec.Command("go", "list", "../../cmd/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(progs)) {
		prog := strings.TrimPrefix(p, mod)
		t.Run(prog, func(t *testing.T) {
			for d := range deps(t, prog) {
				rel := strings.TrimPrefix(d, mod)
				switch {
				case strings.HasPrefix(rel, "internal/testutil"), strings.HasPrefix(rel, "internal/tools"):
					t.Errorf("%s links the test rig %s", prog, rel)
				case strings.HasPrefix(rel, "internal/sim/") && prog != "cmd/acquirer" && prog != "cmd/backoffice":
					t.Errorf("%s links the simulator %s", prog, rel)
				}
			}
		})
	}
}
