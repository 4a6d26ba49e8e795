package gateagent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/policies"
)

type memAudit struct {
	mu   sync.Mutex
	recs []auditlog.Record
	err  error
}

func (m *memAudit) Append(r auditlog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.recs = append(m.recs, r)
	return nil
}

func (m *memAudit) all() []auditlog.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]auditlog.Record(nil), m.recs...)
}

func (m *memAudit) last() auditlog.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recs[len(m.recs)-1]
}

// echo is a target compartment that answers with what it got.
type echo struct {
	got  *callpb.Call
	fail bool
	body string
}

func (e *echo) Handle(_ context.Context, c *callpb.Call) (*callpb.Response, error) {
	e.got = c
	if e.fail {
		return nil, errors.New("secret inner detail")
	}
	return &callpb.Response{Status: 200, Body: []byte(e.body), Reason: "inner"}, nil
}

var labels = map[string]string{
	"outside": "restricted:web", "purchasing": "confidential:shop", "payment": "confidential:pay",
	"keyhandler": "secret:keys,shop", "inside": "confidential:internal",
}

func newTestAgent(t testing.TB) (*Agent, *memAudit, map[string]*echo) {
	t.Helper()
	set, err := LoadPolicySet(context.Background(), "", comps)
	if err != nil {
		t.Fatal(err)
	}
	audit := &memAudit{}
	a := New(slog.New(slog.NewTextHandler(io.Discard, nil)), audit, labels, set)
	targets := map[string]*echo{}
	for _, n := range comps {
		targets[n] = &echo{body: "ok from " + n}
		a.Attach(n, targets[n])
	}
	return a, audit, targets
}

func TestForward(t *testing.T) {
	tests := []struct {
		name       string
		caller     string
		call       *callpb.Call
		status     int32
		reason     string
		decision   string
		wantTarget string
	}{
		{"allowed", "outside", &callpb.Call{Script: "purchasing/catalogue", Method: "GET"}, 200, "pol.allowed", "allow", "purchasing"},
		{"unknown script", "outside", &callpb.Call{Script: "purchasing/admin", Method: "GET"}, 404, "reg.unknown_script", "deny", ""},
		{"policy denies outside → sign", "outside", &callpb.Call{Script: "keyhandler/sign-offer", Method: "POST", Body: []byte("{}"), Meta: map[string]string{"CONTENT_TYPE": "application/json"}}, 403, "pol.caller_clearance", "deny", ""},
		{"purchasing may sign", "purchasing", &callpb.Call{Script: "keyhandler/sign-offer", Method: "POST", Body: []byte("{}"), Meta: map[string]string{"CONTENT_TYPE": "application/json"}}, 200, "pol.allowed", "allow", "keyhandler"},
		{"payment may not sign", "payment", &callpb.Call{Script: "keyhandler/sign-offer", Method: "POST", Body: []byte("{}")}, 403, "pol.caller_clearance", "deny", ""},
		{"method filter", "outside", &callpb.Call{Script: "purchasing/catalogue", Method: "POST"}, 405, "flt.method", "deny", ""},
		{"content type filter", "outside", &callpb.Call{Script: "purchasing/basket", Method: "POST", Body: []byte("{}"), Meta: map[string]string{"CONTENT_TYPE": "text/html"}}, 415, "flt.content_type", "deny", ""},
		{"json filter", "outside", &callpb.Call{Script: "purchasing/basket", Method: "POST", Body: []byte("{"), Meta: map[string]string{"CONTENT_TYPE": "application/json"}}, 400, "flt.json", "deny", ""},
		{"size filter", "outside", &callpb.Call{Script: "purchasing/basket", Method: "POST", Body: make([]byte, 70000), Meta: map[string]string{"CONTENT_TYPE": "application/json"}}, 413, "flt.body_size", "deny", ""},
		// A compartment cannot claim to be someone else: caller comes from
		// the connection, the field is overwritten.
		{"claimed caller ignored", "outside", &callpb.Call{Script: "keyhandler/sign-offer", Method: "POST", Caller: "purchasing", Body: []byte("{}"), Meta: map[string]string{"CONTENT_TYPE": "application/json"}}, 403, "pol.caller_clearance", "deny", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, audit, targets := newTestAgent(t)
			script := tt.call.Script // Forward takes the call over
			resp := a.Forward(context.Background(), tt.caller, tt.call)
			if resp.Status != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.Status, tt.status, resp.Body)
			}
			r := audit.last()
			if r.Reason != tt.reason || r.Decision != tt.decision || r.Caller != tt.caller || r.Script != script || int32(r.Status) != tt.status {
				t.Fatalf("audit %+v, want %s/%s", r, tt.decision, tt.reason)
			}
			for n, e := range targets {
				if (e.got != nil) != (n == tt.wantTarget) {
					t.Errorf("target %s reached=%v", n, e.got != nil)
				}
			}
			if tt.wantTarget != "" {
				got := targets[tt.wantTarget].got
				if got.Caller != tt.caller || strings.Contains(got.Script, "/") {
					t.Fatalf("forwarded %+v", got)
				}
				if resp.Reason != "" {
					t.Fatal("inner reason crossed back")
				}
			}
		})
	}
}

func TestForwardFailures(t *testing.T) {
	catalogue := func() *callpb.Call { return &callpb.Call{Script: "purchasing/catalogue", Method: "GET"} }
	t.Run("target down", func(t *testing.T) {
		a, audit, _ := newTestAgent(t)
		a.Detach("purchasing")
		if r := a.Forward(context.Background(), "outside", catalogue()); r.Status != 503 || audit.last().Reason != "gate.target_unavailable" {
			t.Fatalf("%d %+v", r.Status, audit.last())
		}
	})
	t.Run("target fails: inner error stays inside", func(t *testing.T) {
		a, audit, targets := newTestAgent(t)
		targets["purchasing"].fail = true
		r := a.Forward(context.Background(), "outside", catalogue())
		if r.Status != 502 || strings.Contains(string(r.Body), "secret") || audit.last().Reason != "gate.target_error" {
			t.Fatalf("%d %q %+v", r.Status, r.Body, audit.last())
		}
	})
	t.Run("audit unwritable: fail closed", func(t *testing.T) {
		a, audit, _ := newTestAgent(t)
		audit.err = errors.New("disk full")
		if r := a.Forward(context.Background(), "outside", catalogue()); r.Status != 503 || r.Reason != "gate.audit_unavailable" {
			t.Fatalf("%d %s", r.Status, r.Reason)
		}
	})
	t.Run("card numbers masked towards outside", func(t *testing.T) {
		a, audit, targets := newTestAgent(t)
		targets["purchasing"].body = `{"pan":"4111111111111111"}`
		r := a.Forward(context.Background(), "outside", catalogue())
		if strings.Contains(string(r.Body), "4111111111111111") || len(audit.last().Filters) != 1 {
			t.Fatalf("%q %+v", r.Body, audit.last())
		}
	})
}

func TestBadPolicyRefused(t *testing.T) {
	gate, _ := policies.Default.ReadFile("gate.rego")
	tests, _ := policies.Default.ReadFile("gate_test.rego")
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"syntax error", map[string]string{"gate.rego": string(gate) + "\nallow if {", "gate_test.rego": string(tests)}, "bad policy"},
		{"failing test", map[string]string{"gate.rego": strings.Replace(string(gate), `"pol.allowed"`, `"pol.ok"`, 1), "gate_test.rego": string(tests)}, "policy tests fail"},
		{"no tests", map[string]string{"gate.rego": string(gate)}, "no tests"},
		{"no rego", map[string]string{"README": "x"}, "no .rego"},
		// Policies are compiled and tested by the root supervisor on one
		// secadmin's say: no builtin that reaches the network or host.
		{"http.send", map[string]string{"gate.rego": string(gate) + "\nleak := http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1/\"})\n", "gate_test.rego": string(tests)}, "http.send"},
		{"opa.runtime", map[string]string{"gate.rego": string(gate) + "\nenv := opa.runtime().env\n", "gate_test.rego": string(tests)}, "opa.runtime"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for n, s := range c.files {
				fsys[n] = &fstest.MapFile{Data: []byte(s)}
			}
			_, err := LoadPolicy(context.Background(), fsys)
			if !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestForwardRecordsTargetReason: the reason id a target gives for its
// answer is in the gate's record (never in the answer); anything not
// shaped like a reason id is left out.
func TestForwardRecordsTargetReason(t *testing.T) {
	tests := []struct{ given, recorded string }{
		{"purchasing.signature_required", "purchasing.signature_required"},
		{"inner", "inner"},
		{"<script>alert(1)</script>", ""},
		{strings.Repeat("a", 300), ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.given, func(t *testing.T) {
			a, audit, _ := newTestAgent(t)
			a.Attach("purchasing", targetFunc(func(context.Context, *callpb.Call) (*callpb.Response, error) {
				return &callpb.Response{Status: 401, Reason: tt.given}, nil
			}))
			resp := a.Forward(context.Background(), "outside", &callpb.Call{Script: "purchasing/catalogue", Method: "GET"})
			if resp.Status != 401 || resp.Reason != "" {
				t.Fatalf("answer %d %q", resp.Status, resp.Reason)
			}
			if r := audit.last(); r.TargetReason != tt.recorded || r.Reason != "pol.allowed" {
				t.Fatalf("recorded target reason %q (gate reason %q), want %q", r.TargetReason, r.Reason, tt.recorded)
			}
		})
	}
}

type targetFunc func(context.Context, *callpb.Call) (*callpb.Response, error)

func (f targetFunc) Handle(ctx context.Context, c *callpb.Call) (*callpb.Response, error) {
	return f(ctx, c)
}
