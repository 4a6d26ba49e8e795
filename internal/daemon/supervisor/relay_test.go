package supervisor

import (
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/gateagent"
)

// Event lines become audit events stamped with the compartment that printed
// them, whatever they claim; everything else is log output.
func TestRelayOutputStampsEvents(t *testing.T) {
	s := &Supervisor{}
	out := strings.Join([]string{
		`{"e2s_event":{"kind":"socks.connect","decision":"allow","reason":"socks.allowed","detail":"caller=payment dest=10.77.0.10:8583"}}`,
		`{"e2s_event":{"compartment":"supervisor","kind":"x","decision":"lowered","reason":"sup.confinement_lowered"}}`,
		`{"level":"INFO","msg":"ordinary log line"}`,
		`not json`,
	}, "\n") + "\n"
	s.relayOutput("inside", strings.NewReader(out))
	want := []gateagent.Event{
		{Compartment: "inside", Kind: "inside/socks.connect", Decision: "allow", Reason: "socks.allowed", Detail: "caller=payment dest=10.77.0.10:8583"},
		{Compartment: "inside", Kind: "inside/x", Decision: "deny", Reason: "sup.confinement_lowered"},
	}
	if len(s.pending) != len(want) {
		t.Fatalf("events %+v", s.pending)
	}
	for i := range want {
		if s.pending[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, s.pending[i], want[i])
		}
	}
}
