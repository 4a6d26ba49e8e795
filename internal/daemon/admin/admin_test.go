package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/policies"
)

const testRoles = `version: 1
accounts:
  - {uid: 60101, name: sam, roles: [secadmin]}
  - {uid: 60102, name: sue, roles: [secadmin]}
  - {uid: 60103, name: ada, roles: [auditor]}
  - {uid: 60104, name: otto, roles: [operator]}
  - {uid: 60106, name: kim, roles: [keyadmin]}
`

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	srv      *Server
	clock    *clock
	auditLog string
	ran      []string // policy.propose executions
	state    string   // what policy.propose's State reports
	system   map[int]string
}

// system is the account database of the fixture: every role account, a
// newcomer, and a second account of sam's under another uid.
func system() map[int]string {
	return map[int]string{60101: "sam", 60102: "sue", 60103: "ada", 60104: "otto", 60106: "kim", 60107: "cora", 60108: "sam", 60109: "bob"}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	book, err := OpenRoles(filepath.Join(dir, "roles.yaml"), []byte(testRoles))
	if err != nil {
		t.Fatal(err)
	}
	authz, err := NewAuthorizer(ctx, policies.Default, book)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, auditLog: filepath.Join(dir, "admin.log"),
		state: "active version 0", system: system()}
	props, err := OpenProposals(filepath.Join(dir, "proposals.json"), time.Hour, f.clock.now)
	if err != nil {
		t.Fatal(err)
	}
	alog, err := auditlog.OpenWith(f.auditLog, auditlog.Options{Syslog: "off"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { alog.Close() })
	reasons, _ := LoadReasons(policies.Default, "reasons.yaml", "admin-reasons.yaml")
	f.srv = New(Config{Audit: alog, Roles: book, Authz: authz, Proposals: props,
		AuditLogs: map[string]string{"admin": f.auditLog, "gate": f.auditLog}, Explain: &Explainer{Reasons: reasons},
		Accounts: func(uid int) (string, error) {
			if n, ok := f.system[uid]; ok {
				return n, nil
			}
			return "", fmt.Errorf("%w: uid %d is no account on this system", ErrAccountMismatch, uid)
		}})
	f.srv.Register("policy.propose", Command{
		Check: func(_ context.Context, _ Caller, args json.RawMessage) (string, error) {
			if strings.Contains(string(args), "bad") {
				return "", errors.New("policy set refused: syntax error")
			}
			return "activate " + string(args), nil
		},
		Run: func(_ context.Context, _ Caller, args json.RawMessage) (any, error) {
			f.ran = append(f.ran, string(args))
			f.state = "active version " + string(args)
			return "activated", nil
		},
		Group: "policy",
		State: func(context.Context) (string, error) { return f.state, nil },
	})
	return f
}

var (
	sam  = Caller{UID: 60101, Name: "sam"}
	sue  = Caller{UID: 60102, Name: "sue"}
	ada  = Caller{UID: 60103, Name: "ada"}
	otto = Caller{UID: 60104, Name: "otto"}
	kim  = Caller{UID: 60106, Name: "kim"}
	root = Caller{UID: 0}
)

func (f *fixture) do(c Caller, cmd string, args any) *Response {
	b, _ := json.Marshal(args)
	if args == nil {
		b = nil
	}
	return f.srv.Do(context.Background(), c, Request{Command: cmd, Args: b})
}

func TestAuthorizationDenialNamesWhatIsMissing(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		who          Caller
		cmd          string
		allow        bool
		reason, auth string
	}{
		{ada, "policy.propose", false, "adm.authorization_missing", "policy.write"},
		{sam, "audit.search", false, "adm.authorization_missing", "audit.read"},
		{otto, "role.assign", false, "adm.authorization_missing", "roles.write"},
		{kim, "status", false, "adm.authorization_missing", "appliance.status"},
		{root, "status", false, "adm.no_role", "appliance.status"},
		{sam, "no.such", false, "adm.unknown_command", ""},
		{ada, "audit.search", true, "adm.allowed", "audit.read"},
		{sam, "role.list", true, "adm.allowed", "roles.read"},
		{sam, "whoami", true, "adm.allowed", ""},
	}
	for _, tc := range tests {
		t.Run(tc.who.String()+" "+tc.cmd, func(t *testing.T) {
			r := f.do(tc.who, tc.cmd, nil)
			if r.OK != tc.allow || r.Reason != tc.reason || (tc.auth != "" && r.Authorization != tc.auth) {
				t.Fatalf("got %+v", r)
			}
			if !tc.allow && tc.auth != "" && !strings.Contains(r.Error, `"`+tc.auth+`"`) {
				t.Fatalf("denial does not name the missing authorization: %q", r.Error)
			}
		})
	}
	// Every denial is audited.
	recs, err := auditlog.Search(f.auditLog, auditlog.Filter{Decision: "deny"}, 0)
	if err != nil || len(recs) != 6 {
		t.Fatalf("%d deny records, want 6: %v", len(recs), err)
	}
	if recs[0].User != "uid:60103(ada)" || recs[0].Script != "e2sctl policy.propose" || recs[0].Detail != "missing authorization policy.write" {
		t.Fatalf("denial record %+v", recs[0])
	}
}

func TestTwoPersonRule(t *testing.T) {
	tests := []struct {
		name   string
		steps  func(f *fixture, id string) *Response
		reason string
		runs   int
	}{
		{"second person approves", func(f *fixture, id string) *Response {
			return f.do(sue, "approve", map[string]string{"id": id})
		}, "adm.allowed", 1},
		{"proposer cannot approve", func(f *fixture, id string) *Response {
			return f.do(sam, "approve", map[string]string{"id": id})
		}, "adm.same_person", 0},
		{"approver needs the same authorization", func(f *fixture, id string) *Response {
			return f.do(ada, "approve", map[string]string{"id": id})
		}, "adm.authorization_missing", 0},
		{"expired proposal cannot be approved", func(f *fixture, id string) *Response {
			f.clock.add(time.Hour + time.Second)
			return f.do(sue, "approve", map[string]string{"id": id})
		}, "adm.expired", 0},
		{"rejected proposal cannot be approved", func(f *fixture, id string) *Response {
			if r := f.do(sue, "reject", map[string]string{"id": id}); !r.OK {
				return r
			}
			return f.do(sue, "approve", map[string]string{"id": id})
		}, "adm.failed", 0},
		{"approved only once", func(f *fixture, id string) *Response {
			f.do(sue, "approve", map[string]string{"id": id})
			return f.do(sue, "approve", map[string]string{"id": id})
		}, "adm.failed", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			p := f.do(sam, "policy.propose", map[string]string{"v": "2"})
			if !p.OK || p.Proposal == nil || p.Reason != "adm.proposed" || len(f.ran) != 0 {
				t.Fatalf("propose: %+v ran %v", p, f.ran)
			}
			r := tc.steps(f, p.Proposal.ID)
			if r.Reason != tc.reason || len(f.ran) != tc.runs {
				t.Fatalf("got %+v, ran %d times; want %s, %d", r, len(f.ran), tc.reason, tc.runs)
			}
		})
	}
}

func TestBadProposalRefusedAtOnce(t *testing.T) {
	f := newFixture(t)
	r := f.do(sam, "policy.propose", map[string]string{"v": "bad"})
	if r.OK || !strings.Contains(r.Error, "syntax error") || len(f.srv.cfg.Proposals.List()) != 0 {
		t.Fatalf("bad policy proposal: %+v", r)
	}
}

func TestRoleAssignmentTakesTwoAndApplies(t *testing.T) {
	f := newFixture(t)
	newbie := Caller{UID: 60107, Name: "cora"}
	if r := f.do(newbie, "whoami", nil); r.Reason != "adm.no_role" {
		t.Fatalf("before: %+v", r)
	}
	p := f.do(sam, "role.assign", RoleArgs{UID: 60107, Name: "cora", Role: "contentmgr"})
	if p.Proposal == nil {
		t.Fatalf("role.assign did not make a proposal: %+v", p)
	}
	if r := f.do(newbie, "whoami", nil); r.Reason != "adm.no_role" {
		t.Fatalf("role applied before approval: %+v", r)
	}
	if r := f.do(sue, "approve", map[string]string{"id": p.Proposal.ID}); !r.OK {
		t.Fatalf("approve: %+v", r)
	}
	// Authorised now.
	if r := f.do(newbie, "whoami", nil); !r.OK {
		t.Fatalf("after approval: %+v", r)
	}
	if r := f.do(newbie, "status", nil); r.Reason != "adm.authorization_missing" {
		t.Fatalf("contentmgr got operator's status: %+v", r)
	}
}

func TestExplain(t *testing.T) {
	f := newFixture(t)
	f.srv.cfg.Explain.Modules = func() map[string]string {
		b, _ := policies.Default.ReadFile("gate.rego")
		return map[string]string{"gate.rego": string(b)}
	}
	r := f.do(otto, "explain", map[string]string{"id": "pol.caller_clearance"})
	var x Explanation
	if !r.OK || json.Unmarshal(r.Result, &x) != nil {
		t.Fatalf("explain: %+v", r)
	}
	if !strings.Contains(x.Text, "dominate") || !strings.Contains(x.Rule, "gate.rego:") || !strings.Contains(x.Rule, "e2s.dominates(input.caller_label") {
		t.Fatalf("explanation %+v", x)
	}
	// A record's req_id needs audit.read: the operator may not, the auditor may.
	f.do(otto, "policy.propose", nil) // a denial to explain
	recs, _ := auditlog.Search(f.auditLog, auditlog.Filter{Decision: "deny"}, 1)
	if r := f.do(otto, "explain", map[string]string{"id": recs[0].ReqID}); r.OK {
		t.Fatalf("operator explained an audit record: %+v", r)
	}
	r = f.do(ada, "explain", map[string]string{"id": recs[0].ReqID})
	if !r.OK || json.Unmarshal(r.Result, &x) != nil || x.Reason != "adm.authorization_missing" || x.Record == nil {
		t.Fatalf("auditor explain record: %+v %+v", r, x)
	}
}

// Over the real socket the caller is who the kernel says (SO_PEERCRED):
// the test runs as root, which has no role.
func TestSocketIdentifiesCaller(t *testing.T) {
	f := newFixture(t)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.srv.Serve(ctx, l) }()
	r, err := Call(sock, "status", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK || r.Reason != "adm.no_role" {
		t.Fatalf("root over the socket: %+v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// An approval carries out what the approver saw, or nothing: the state a
// proposal was computed against must still hold, and one proposal per
// state is pending at a time.
func TestApprovalBoundToState(t *testing.T) {
	tests := []struct {
		name   string
		steps  func(f *fixture, id string) *Response
		reason string
		runs   int
	}{
		{"state unchanged", func(f *fixture, id string) *Response {
			return f.do(sue, "approve", map[string]string{"id": id})
		}, "adm.allowed", 1},
		{"state changed in between", func(f *fixture, id string) *Response {
			f.state = "active version 7"
			return f.do(sue, "approve", map[string]string{"id": id})
		}, "adm.stale", 0},
		{"second proposal on the same state", func(f *fixture, id string) *Response {
			return f.do(sue, "policy.propose", map[string]string{"v": "2"})
		}, "adm.pending", 0},
		{"proposal on a changed state replaces the stale one", func(f *fixture, id string) *Response {
			f.state = "active version 7"
			p := f.do(sue, "policy.propose", map[string]string{"v": "3"})
			if r := f.do(sue, "approve", map[string]string{"id": id}); r.OK || !strings.Contains(r.Error, "void") {
				return r
			}
			return f.do(sam, "approve", map[string]string{"id": p.Proposal.ID})
		}, "adm.allowed", 1},
		{"proposer lost the role", func(f *fixture, id string) *Response {
			if err := f.srv.cfg.Roles.Change(60101, "sam", "secadmin", false); err != nil {
				return &Response{Error: err.Error()}
			}
			f.srv.cfg.Authz.Reload(context.Background(), f.srv.cfg.Roles)
			return f.do(sue, "approve", map[string]string{"id": id})
		}, "adm.proposer_lost", 0},
		{"proposer's account renamed", func(f *fixture, id string) *Response {
			f.system[60101] = "samuel"
			return f.do(sue, "approve", map[string]string{"id": id})
		}, "adm.proposer_lost", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			p := f.do(sam, "policy.propose", map[string]string{"v": "2"})
			if !p.OK || p.Proposal.Basis != "active version 0" {
				t.Fatalf("propose: %+v", p)
			}
			r := tc.steps(f, p.Proposal.ID)
			if r.Reason != tc.reason || len(f.ran) != tc.runs {
				t.Fatalf("got %+v, ran %d times; want %s, %d", r, len(f.ran), tc.reason, tc.runs)
			}
			if tc.reason != "adm.allowed" && !strings.Contains(r.Error, "propose") && !strings.Contains(r.Error, "approve or reject") {
				t.Fatalf("the refusal does not say what to do next: %q", r.Error)
			}
		})
	}
}

// Role accounts are persons: a role goes to the uid's account in the
// system account database, under its name, and never to a second uid of
// someone already in the role book.
func TestRolesArePersons(t *testing.T) {
	tests := []struct {
		name   string
		args   RoleArgs
		reason string
		says   string
	}{
		{"newcomer", RoleArgs{UID: 60107, Role: "auditor"}, "adm.proposed", "assign role auditor to cora (uid 60107): roles [] → [auditor]"},
		{"second uid of sam", RoleArgs{UID: 60108, Role: "secadmin"}, "adm.second_account", "sam already holds roles as uid 60101"},
		{"free-text name", RoleArgs{UID: 60109, Name: "sam", Role: "secadmin"}, "adm.account_mismatch", `uid 60109 is "bob" in the system account database, not "sam"`},
		{"no such account", RoleArgs{UID: 60199, Role: "secadmin"}, "adm.account_mismatch", "uid 60199 is no account on this system"},
		{"revoke shows the person", RoleArgs{UID: 60103, Role: "auditor"}, "adm.proposed", "revoke role auditor from ada (uid 60103): roles [auditor] → []"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			cmd := "role.assign"
			if strings.HasPrefix(tc.name, "revoke") {
				cmd = "role.revoke"
			}
			r := f.do(sam, cmd, tc.args)
			got := r.Error
			if r.Proposal != nil {
				got = r.Proposal.Summary
			}
			if r.Reason != tc.reason || !strings.Contains(got, tc.says) {
				t.Fatalf("got %+v, want %s saying %q", r, tc.reason, tc.says)
			}
		})
	}
}

func TestAccountMismatchHoldsNoRole(t *testing.T) {
	f := newFixture(t)
	f.system[60104] = "mallory"
	if r := f.do(otto, "status", nil); r.OK || r.Reason != "adm.account_mismatch" {
		t.Fatalf("mismatched account: %+v", r)
	}
	delete(f.system, 60104)
	if r := f.do(otto, "status", nil); r.OK || r.Reason != "adm.account_mismatch" {
		t.Fatalf("deleted account: %+v", r)
	}
}

func TestRoleBookNamesArePersons(t *testing.T) {
	tests := []struct {
		book, says string
	}{
		{"version: 1\naccounts:\n  - {uid: 1001, roles: [auditor]}\n", "uid 1001 has no name"},
		{"version: 1\naccounts:\n  - {uid: 1001, name: sam, roles: [auditor]}\n  - {uid: 1002, name: sam, roles: [secadmin]}\n", `"sam" is listed under uid 1001 and uid 1002: one person, one account`},
	}
	for _, tc := range tests {
		if _, err := ParseRoles([]byte(tc.book)); !errors.Is(err, ErrBadRoles) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q: %v, want it to say %q", tc.book, err, tc.says)
		}
	}
}

// A uid without a role is answered before anything is read, and however
// often it connects the admin log gets one record for it.
func TestSocketRefusesUnknownUidsOnce(t *testing.T) {
	f := newFixture(t)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.srv.Serve(ctx, l) }()
	for range 50 {
		r, err := Call(sock, "status", nil)
		if err != nil || r.Reason != "adm.no_role" {
			t.Fatalf("root over the socket: %+v %v", r, err)
		}
	}
	recs, err := auditlog.Search(f.auditLog, auditlog.Filter{}, 0)
	if err != nil || len(recs) != 1 || recs[0].User != "uid:0" || recs[0].Reason != "adm.no_role" {
		t.Fatalf("%d records for 50 refusals, want 1: %+v %v", len(recs), recs, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Stopping writes the count of the refusals not yet audited.
	recs, _ = auditlog.Search(f.auditLog, auditlog.Filter{}, 0)
	if len(recs) != 2 || !strings.HasPrefix(recs[1].Detail, "49 connection(s) since") {
		t.Fatalf("after stop: %+v", recs)
	}
}

// The explanation of a gate record whose target refused the call says what
// the target's reason id means, beside the gate's own; the record shows
// the proven user and what the caller claimed.
func TestExplainRecordTargetReason(t *testing.T) {
	e := &Explainer{Reasons: map[string]string{"pol.allowed": "allowed by the policy and every filter",
		"purchasing.signature_required": "purchasing refused a call that needs a person but carried no signed request"}}
	x := e.ExplainRecord(auditlog.Record{Caller: "outside", Script: "purchasing/private", Reason: "pol.allowed",
		TargetReason: "purchasing.signature_required", Status: 401, ClaimedUser: "cert:0011"})
	if x.Text != "allowed by the policy and every filter" || !strings.Contains(x.TargetText, "no signed request") ||
		x.Record.User != "" || x.Record.ClaimedUser != "cert:0011" {
		t.Fatalf("explanation %+v", x)
	}
	if x := e.ExplainRecord(auditlog.Record{Reason: "pol.allowed", TargetReason: "purchasing.made_up"}); x.TargetText != "unknown reason id" {
		t.Fatalf("unknown target reason explained as %q", x.TargetText)
	}
	if x := e.ExplainRecord(auditlog.Record{Reason: "pol.allowed"}); x.TargetText != "" {
		t.Fatalf("no target reason explained as %q", x.TargetText)
	}
}
