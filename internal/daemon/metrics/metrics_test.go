package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

func TestGateMetricsFromRecords(t *testing.T) {
	m := New(func() []string { return []string{"purchasing/catalogue", "payment/authorize"} },
		func() map[string]int { return map[string]int{"payment": 2} })
	now := time.Now()
	recs := []auditlog.Record{
		{Time: now.Add(-3 * time.Millisecond), Caller: "outside", Script: "purchasing/catalogue", Decision: "allow", Reason: "pol.allowed", LatencyUS: 800, Filters: []string{"pan_mask"}},
		{Time: now.Add(-2 * time.Millisecond), Caller: "outside", Script: "purchasing/catalogue", Decision: "allow", Reason: "pol.allowed", LatencyUS: 700},
		{Time: now, Caller: "outside", Script: "keyhandler/sign", Decision: "deny", Reason: "pol.caller_clearance", LatencyUS: 90},
		{Time: now, Caller: "outside", Script: "purchasing/basket", Decision: "deny", Reason: "flt.method", LatencyUS: 60},
		// A record of refusals over a caller's limits counts the calls it stands for.
		{Caller: "outside", Script: "gate/limit", Decision: "deny", Reason: "gate.rate_limited", Status: 429, Count: 7},
		// Events are counted apart, never as calls or rule hits.
		{Time: now, Caller: "inside", Script: "inside/socks.connect", Decision: "allow", Reason: "socks.allowed", Event: "compartment"},
		{Time: now, Caller: "purchasing", Script: "supervisor/event", Decision: "deny", Reason: "sup.event_refused", Event: "supervisor"},
	}
	for _, r := range recs {
		m.Gate(r, now)
	}
	m.Admin("status", "allow")
	b, err := m.Text()
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{
		`e2sgate_gate_calls_total{decision="allow",script="purchasing/catalogue"} 2`,
		`e2sgate_gate_calls_total{decision="deny",script="keyhandler/sign"} 1`,
		`e2sgate_gate_call_seconds_count{decision="allow"} 2`,
		`e2sgate_policy_rule_hits_total{rule="pol.caller_clearance"} 1`,
		`e2sgate_gate_calls_total{decision="deny",script="gate/limit"} 7`,
		`e2sgate_policy_rule_hits_total{rule="gate.rate_limited"} 7`,
		`e2sgate_filter_hits_total{filter="pan_mask"} 1`,
		`e2sgate_filter_hits_total{filter="method"} 1`,
		`e2sgate_compartment_restarts_total{compartment="payment"} 2`,
		`e2sgate_registry_entry_unused{script="payment/authorize"} 1`,
		`e2sgate_audit_lag_seconds_count 4`,
		`e2sgate_admin_commands_total{command="status",decision="allow"} 1`,
		`e2sgate_audit_events_total{kind="inside/socks.connect",origin="compartment",reason="socks.allowed"} 1`,
		`e2sgate_audit_events_total{kind="supervisor/event",origin="supervisor",reason="sup.event_refused"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(text, `rule="socks.allowed"`) || strings.Contains(text, `script="inside/socks.connect"`) {
		t.Error("an event was counted as a gate decision")
	}
	if strings.Contains(text, `e2sgate_registry_entry_unused{script="purchasing/catalogue"}`) {
		t.Error("a used script is listed as unused")
	}
}
