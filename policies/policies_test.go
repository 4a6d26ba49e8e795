package policies_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/policies"
)

// The embedded policy's own Rego tests pass, and there are some.
func TestRegoTests(t *testing.T) {
	modules := map[string]string{}
	entries, err := fs.Glob(policies.Default, "*.rego")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range entries {
		b, _ := fs.ReadFile(policies.Default, n)
		modules[n] = string(b)
	}
	if err := gateagent.RunPolicyTests(context.Background(), modules); err != nil {
		t.Fatal(err)
	}
	// A policy whose test fails is refused.
	modules["gate_test.rego"] += "\ntest_broken if { false }\n"
	err = gateagent.RunPolicyTests(context.Background(), modules)
	if err == nil || !strings.Contains(err.Error(), "test_broken") {
		t.Fatalf("broken test not reported: %v", err)
	}
}
