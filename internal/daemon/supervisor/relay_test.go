package supervisor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/gateagent"
)

// Event lines become audit events only from the compartments and of the
// kinds and reasons their manifests declare, stamped with the compartment
// that printed them and marked as events; anything else a compartment
// prints in that form is refused, and never recorded as its claim.
func TestRelayOutputAcceptsDeclaredEventsOnly(t *testing.T) {
	tests := []struct {
		name        string
		compartment string
		line        string
		want        []gateagent.Event
	}{
		{"inside's SOCKS decision", "inside",
			`{"e2s_event":{"kind":"socks.connect","decision":"allow","reason":"socks.allowed","detail":"caller=payment dest=10.77.0.10:8583"}}`,
			[]gateagent.Event{{Compartment: "inside", Kind: "inside/socks.connect", Decision: "allow", Reason: "socks.allowed", Detail: "caller=payment dest=10.77.0.10:8583", Origin: "compartment"}}},
		{"inside's confirmation given up", "inside",
			`{"e2s_event":{"kind":"backoffice.confirmation","decision":"error","reason":"inside.confirmation_given_up","detail":"c1.json"}}`,
			[]gateagent.Event{{Compartment: "inside", Kind: "inside/backoffice.confirmation", Decision: "deny", Reason: "inside.confirmation_given_up", Detail: "c1.json", Origin: "compartment"}}},
		{"a claimed compartment is ignored", "inside",
			`{"e2s_event":{"compartment":"supervisor","kind":"socks.connect","decision":"deny","reason":"socks.not_allowlisted","origin":"gate"}}`,
			[]gateagent.Event{{Compartment: "inside", Kind: "inside/socks.connect", Decision: "deny", Reason: "socks.not_allowlisted", Origin: "compartment"}}},
		{"purchasing forges a gate decision", "purchasing",
			`{"e2s_event":{"kind":"order","decision":"allow","reason":"pol.allowed"}}`,
			[]gateagent.Event{refused("purchasing", "order", "pol.allowed")}},
		{"inside: a reason its kind does not declare", "inside",
			`{"e2s_event":{"kind":"socks.connect","decision":"allow","reason":"pol.allowed"}}`,
			[]gateagent.Event{refused("inside", "socks.connect", "pol.allowed")}},
		{"inside: a kind it does not declare", "inside",
			`{"e2s_event":{"kind":"x","decision":"lowered","reason":"sup.confinement_lowered"}}`,
			[]gateagent.Event{refused("inside", "x", "sup.confinement_lowered")}},
		{"an unknown compartment", "nobody",
			`{"e2s_event":{"kind":"socks.connect","decision":"allow","reason":"socks.allowed"}}`,
			[]gateagent.Event{refused("nobody", "socks.connect", "socks.allowed")}},
		{"log lines stay log lines", "inside", `{"level":"INFO","msg":"ordinary log line"}` + "\nnot json", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Supervisor{}
			s.relayOutput(tt.compartment, strings.NewReader(tt.line+"\n"))
			if len(s.pending) != len(tt.want) {
				t.Fatalf("events %+v, want %+v", s.pending, tt.want)
			}
			for i := range tt.want {
				if s.pending[i] != tt.want[i] {
					t.Errorf("event %d = %+v,\nwant %+v", i, s.pending[i], tt.want[i])
				}
			}
		})
	}
}

func refused(name, kind, reason string) gateagent.Event {
	return gateagent.Event{Compartment: name, Kind: "supervisor/event", Decision: "deny", Reason: "sup.event_refused",
		Detail: fmt.Sprintf("%s printed an event it does not declare: kind %q reason %q", name, kind, reason), Origin: "supervisor"}
}

// A compartment printing events faster than the rate limit gets eventBurst
// recorded at once and one record counting the rest; the clock stands
// still, so the test does not depend on timing.
func TestRelayOutputRateLimited(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := &Supervisor{now: func() time.Time { return now }}
	line := `{"e2s_event":{"kind":"socks.connect","decision":"deny","reason":"socks.not_allowlisted"}}` + "\n"
	s.relayOutput("inside", strings.NewReader(strings.Repeat(line, eventBurst+300)))
	// The queue holds at most maxPending; with the gate down, that is what
	// the rate limit leaves plus the count.
	if len(s.pending) != eventBurst+1 {
		t.Fatalf("%d events queued, want %d", len(s.pending), eventBurst+1)
	}
	if last := s.pending[eventBurst]; last.Reason != "sup.events_dropped" || !strings.HasPrefix(last.Detail, "300 events of inside") {
		t.Fatalf("last %+v", last)
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newBucket(10, 2)
	steps := []struct {
		at   time.Duration
		want bool
	}{{0, true}, {0, true}, {0, false}, {50 * time.Millisecond, false}, {100 * time.Millisecond, true}, {100 * time.Millisecond, false}, {time.Hour, true}, {time.Hour, true}, {time.Hour, false}}
	for i, st := range steps {
		if got := b.allow(t0.Add(st.at)); got != st.want {
			t.Fatalf("step %d at %v: %v, want %v", i, st.at, got, st.want)
		}
	}
}

// While no gate agent runs, the supervisor queues at most maxPending events
// (once 100 000 × 1 KB piled up in the root supervisor); the rest are
// counted and reported when the gate agent is back.
func TestPendingEventsBounded(t *testing.T) {
	s := &Supervisor{}
	detail := strings.Repeat("x", 1024)
	for i := range 100_000 {
		name := "inside"
		if i%2 == 1 {
			name = "supervisor"
		}
		s.audit(gateagent.Event{Compartment: name, Kind: "k", Reason: "kernel.connect_denied", Detail: detail})
	}
	if len(s.pending) != maxPending {
		t.Fatalf("%d queued, want %d", len(s.pending), maxPending)
	}
	s.mu.Lock()
	out := s.takePendingLocked()
	s.mu.Unlock()
	if len(out) != maxPending+2 || len(s.pending) != 0 {
		t.Fatalf("%d sent, %d left", len(out), len(s.pending))
	}
	for i, want := range []string{"49500 events of inside", "49500 events of supervisor"} {
		if e := out[maxPending+i]; e.Reason != "sup.events_dropped" || !strings.HasPrefix(e.Detail, want) {
			t.Fatalf("count %d: %+v", i, e)
		}
	}
}
