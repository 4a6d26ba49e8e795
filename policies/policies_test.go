package policies_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

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

// reasons.yaml is one flat map of reason id → text that operators read.
func TestReasonsParse(t *testing.T) {
	b, err := fs.ReadFile(policies.Default, "reasons.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var reasons map[string]string
	if err := yaml.Unmarshal(b, &reasons); err != nil {
		t.Fatalf("reasons.yaml: %v", err)
	}
	for _, id := range []string{"reg.unknown_script", "pol.caller_clearance", "gate.audit_unavailable", "kernel.connect_denied",
		"gate.field_too_long", "gate.message_too_large", "gate.plugin_refused", "sup.event_refused", "sup.events_dropped", "inside.confirmation_given_up"} {
		if reasons[id] == "" {
			t.Errorf("reason %s has no text", id)
		}
	}
}
