package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/auditlog"
)

func appendRecords(t *testing.T, path string, recs ...auditlog.Record) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
	}
}

func TestShadow(t *testing.T) {
	s, reloads := openStore(t)
	ctx := context.Background()
	if _, err := s.ShadowReport(); !errors.Is(err, ErrNoShadow) {
		t.Fatalf("report without a shadow: %v", err)
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	catalogue := auditlog.Record{Time: now, ReqID: "r1", User: "alice", Caller: "outside", Target: "purchasing",
		Script: "purchasing/catalogue", Decision: "allow", Reason: "pol.allowed"}
	// Calls before the shadow starts are not decided again.
	appendRecords(t, s.cfg.AuditLog, catalogue)

	if _, err := s.StartShadow(ctx, defaultFiles(t, badSets[0].edits), false); !errors.Is(err, ErrRefused) {
		t.Fatalf("shadow of a bad set: %v", err)
	}
	r, err := s.StartShadow(ctx, onlyPurchasingReadsCatalogue(t), false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Calls != 0 || len(r.Disagreements) != 0 {
		t.Fatalf("fresh shadow: %+v", r)
	}
	basket := auditlog.Record{Time: now, Caller: "outside", Target: "purchasing",
		Script: "purchasing/basket", Decision: "allow", Reason: "pol.allowed"}
	admin := auditlog.Record{Time: now, Caller: "ops", Script: "e2sctl status", Decision: "allow", Reason: "adm.allowed"}
	appendRecords(t, s.cfg.AuditLog, catalogue, basket, admin)

	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err = s.ShadowReport()
		if err != nil {
			t.Fatal(err)
		}
		if r.Calls == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := ShadowDisagreed{Time: now.Truncate(time.Minute), Caller: "outside", Script: "purchasing/catalogue",
		Active: "allow", Candidate: "deny (pol.caller_not_permitted)"}
	if r.Calls != 2 || len(r.Disagreements) != 1 || r.Disagreements[0] != want || r.Error != "" {
		t.Fatalf("report: %+v, want 2 calls and one disagreement %+v", r, want)
	}
	b, _ := json.Marshal(r)
	if s := string(b); containsAny(s, "r1", "alice") {
		t.Fatalf("report names the request or the user: %s", s)
	}

	r, err = s.StopShadow()
	if err != nil || r.Calls != 2 {
		t.Fatalf("stop: %+v %v", r, err)
	}
	if _, err := s.ShadowReport(); !errors.Is(err, ErrNoShadow) {
		t.Fatalf("report after stop: %v", err)
	}
	if reloads.Load() != 0 {
		t.Fatalf("a shadow reloaded the gate")
	}
	wantState(t, s, State{Active: 0, History: []int{0}, Versions: []int{0}})
}

func TestShadowBoundsDisagreements(t *testing.T) {
	sh := &shadow{}
	rec := auditlog.Record{Caller: "outside", Script: "purchasing/catalogue"}
	for range maxShadow + 5 {
		sh.record(rec, "allow", "deny (pol.caller_not_permitted)")
	}
	sh.record(rec, "allow", "allow")
	if r := sh.report; r.Calls != maxShadow+6 || len(r.Disagreements) != maxShadow || r.Dropped != 5 {
		t.Fatalf("calls %d, kept %d, dropped %d", r.Calls, len(r.Disagreements), r.Dropped)
	}
}

func containsAny(s string, subs ...string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, `"`+sub+`"`) })
}

// leakingCandidate is a secadmin's try to read audit data through a shadow:
// it puts the recorded user into the reason of its denials. It compiles,
// lints and passes its tests.
func leakingCandidate(t *testing.T) map[string]string {
	return defaultFiles(t, map[string]func(string) string{"gate.rego": func(s string) string {
		return s + `
denials contains reason if {
	input.script == "purchasing/catalogue"
	startswith(input.user.name, "cert:")
	reason := concat("", ["leak:", input.user.name])
}
`
	}})
}

func TestShadowLeaksNoAuditData(t *testing.T) {
	tests := []struct {
		name      string
		users     bool
		candidate string // the verdict the report shows
	}{
		{"requester may not read audit", false, ""}, // the user is no input: the candidate agrees
		{"requester may read audit", true, "deny"},  // the user is input, its text is not in the catalogue
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := openStore(t)
			ctx := context.Background()
			if r := s.Check(ctx, leakingCandidate(t)); !r.OK {
				t.Fatalf("the leaking candidate does not pass its checks: %s", r.Error)
			}
			appendRecords(t, s.cfg.AuditLog) // the gate agent's log exists
			if _, err := s.StartShadow(ctx, leakingCandidate(t), tc.users); err != nil {
				t.Fatal(err)
			}
			rec := auditlog.Record{Time: time.Now(), ReqID: "r9", User: "cert:00aa11bb22cc33dd", Caller: "outside", Target: "purchasing",
				Script: "purchasing/catalogue", Decision: "allow", Reason: "pol.allowed"}
			appendRecords(t, s.cfg.AuditLog, rec, rec)
			var r *ShadowReport
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if r, _ = s.ShadowReport(); r.Calls == 2 {
					break
				}
			}
			b, _ := json.Marshal(r)
			if r.Calls != 2 || r.UserInput != tc.users || strings.Contains(string(b), "leak") || strings.Contains(string(b), "cert:") {
				t.Fatalf("report %s", b)
			}
			if tc.candidate == "" && len(r.Disagreements) != 0 || tc.candidate != "" && (len(r.Disagreements) != 2 || r.Disagreements[0].Candidate != "deny") {
				t.Fatalf("report %s, want candidate verdicts %q", b, tc.candidate)
			}
			// A report of users is for those who may read the audit trail.
			if _, err := withheld(s.ShadowReport())(false); tc.users != errors.Is(err, ErrUsersWithheld) {
				t.Fatalf("report to a secadmin: %v", err)
			}
		})
	}
}

func TestCatalogued(t *testing.T) {
	reasons := map[string]string{"pol.caller_clearance": "…"}
	for in, want := range map[gateagent.Verdict]gateagent.Verdict{
		"allow": "allow", "unregistered": "unregistered", "deny (pol.caller_clearance)": "deny (pol.caller_clearance)",
		"deny (leak:cert:00aa)": "deny", "deny (pol.caller_clearance) roles x": "deny", "anything": "deny",
	} {
		if got := catalogued(in, reasons); got != want {
			t.Errorf("catalogued(%q) = %q, want %q", in, got, want)
		}
	}
}
