package gateagent

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/policies"
)

// changedPolicy is the shipped policy set with rules the table must not
// fold: one reads the method, one
// the user's name, and a registration requires a role.
func changedPolicy(t *testing.T) fs.FS {
	t.Helper()
	rego, err := policies.Default.ReadFile("gate.rego")
	if err != nil {
		t.Fatal(err)
	}
	reg, err := policies.Default.ReadFile("registry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return fstest.MapFS{
		"gate.rego": {Data: append(rego, []byte(`
denials contains "pol.order_get_refused" if {
	input.script == "purchasing/order"
	input.method == "GET"
}

denials contains "pol.user_missing" if {
	input.script == "purchasing/login"
	input.user.name == ""
}
`)...)},
		"gate_test.rego": {Data: []byte(`package e2sgate.gate_test

import rego.v1

test_default_deny if not data.e2sgate.gate.decision.allow with input as {}
`)},
		"registry.yaml": {Data: append(reg, []byte(`  purchasing/approve:
    target: purchasing
    handler: approve
    methods: [POST]
    callers: [outside, inside]
    clearance: unclassified
    roles: [manager]
`)...)},
	}
}

type policyCase struct {
	name string
	fsys fs.FS
}

func policyCases(t *testing.T) []policyCase {
	return []policyCase{{"shipped", policies.Default}, {"changed", changedPolicy(t)}}
}

var (
	testMethods = []string{"GET", "POST", "PUT", "DELETE", "", "get"}
	testUsers   = []string{"", "alice", "bob", "root"}
	testRoles   = []string{"buyer", "manager", "secadmin", "auditor"}
)

func randomUser(r *rand.Rand) policyUser {
	u := policyUser{Name: testUsers[r.IntN(len(testUsers))], Roles: []string{}}
	for _, role := range testRoles {
		if r.IntN(2) == 0 {
			u.Roles = append(u.Roles, role)
		}
	}
	return u
}

// TestDecisionTableAgrees proves the table and the full query agree: every
// entry of the table equals the full query's decision for its key whatever
// the user, and every (caller, script, method) of the registry — and
// random calls, names the registry does not know included — is decided the
// same by an agent with the table as by the full query alone. For the
// shipped policy and for a changed one whose rules read the method, the
// user and a role.
func TestDecisionTableAgrees(t *testing.T) {
	ctx := context.Background()
	for _, pc := range policyCases(t) {
		t.Run(pc.name, func(t *testing.T) {
			set, err := LoadPolicySetFS(ctx, pc.fsys, comps)
			if err != nil {
				t.Fatal(err)
			}
			a := New(slog.New(slog.NewTextHandler(io.Discard, nil)), &memAudit{}, labels, set)
			a.compiling.Wait()
			table := a.set.Load().table
			if table == nil || len(table.entries) == 0 {
				t.Fatal("no decision table compiled")
			}
			r := rand.New(rand.NewPCG(1, uint64(len(pc.name))))

			// Every entry, for users the table never saw.
			for k, want := range table.entries {
				reg := set.Registry.Lookup(k.script)
				for range 8 {
					in := PolicyInput{Caller: k.caller, CallerLabel: labels[k.caller], Target: reg.Target, TargetLabel: labels[reg.Target],
						Script: k.script, Method: k.method,
						Registration: policyReg{Callers: reg.Callers, Clearance: reg.Clearance, Roles: reg.Roles}, User: randomUser(r)}
					got, err := set.Policy.Decide(ctx, in)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("%v user %+v: full query %+v, table %+v", k, in.User, got, want)
					}
				}
			}

			// Every (caller, script, method) of the registry, then random
			// calls: the agent's answer equals the full query's.
			callers := slices.Sorted(maps.Keys(labels))
			scripts := slices.Sorted(maps.Keys(set.Registry.Scripts))
			var calls []*callpb.Call
			for _, c := range callers {
				for _, s := range scripts {
					for _, m := range testMethods {
						calls = append(calls, &callpb.Call{Caller: c, Script: s, Method: m, User: testUsers[len(calls)%len(testUsers)]})
					}
				}
			}
			for range 3000 {
				c := &callpb.Call{Caller: "stranger", Script: "purchasing/none", Method: testMethods[r.IntN(len(testMethods))], User: testUsers[r.IntN(len(testUsers))]}
				if r.IntN(8) != 0 {
					c.Caller = callers[r.IntN(len(callers))]
				}
				if r.IntN(8) != 0 {
					c.Script = scripts[r.IntN(len(scripts))]
				}
				calls = append(calls, c)
			}
			hits := 0
			for _, c := range calls {
				reg := set.Registry.Lookup(c.Script)
				if reg == nil {
					continue
				}
				got, gotErr := a.policyDecision(ctx, a.set.Load(), reg, c)
				want, wantErr := set.Policy.Decide(ctx, PolicyInput{Caller: c.Caller, CallerLabel: labels[c.Caller], Target: reg.Target, TargetLabel: labels[reg.Target],
					Script: c.Script, Method: c.Method,
					Registration: policyReg{Callers: reg.Callers, Clearance: reg.Clearance, Roles: reg.Roles}, User: policyUser{Name: c.User}})
				if (gotErr != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) {
					t.Fatalf("%s %s from %s (user %q): agent %+v (%v), full query %+v (%v)", c.Method, c.Script, c.Caller, c.User, got, gotErr, want, wantErr)
				}
				if _, ok := table.lookup(c.Caller, c.Script, c.Method); ok {
					hits++
				}
			}
			if hits == 0 {
				t.Fatal("no call was decided by the table")
			}
			t.Logf("%d entries, %d keys left to the full query; %d of %d calls from the table", len(table.entries), table.dynamic, hits, len(calls))
		})
	}
}

// TestDecisionTableLeavesDynamicKeys: keys whose decision reads the user
// or a required role are not in the table, while the rest are.
func TestDecisionTableLeavesDynamicKeys(t *testing.T) {
	ctx := context.Background()
	set, err := LoadPolicySetFS(ctx, changedPolicy(t), comps)
	if err != nil {
		t.Fatal(err)
	}
	table, err := set.Policy.compileTable(ctx, set.Registry, labels)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []tableKey{
		{"outside", "purchasing/login", "POST"},   // reads input.user.name
		{"outside", "purchasing/approve", "POST"}, // requires a role
		{"inside", "purchasing/approve", "POST"},
	} {
		if d, ok := table.lookup(k.caller, k.script, k.method); ok {
			t.Errorf("%v is in the table (%+v); its decision depends on more than the key", k, d)
		}
	}
	for k, want := range map[tableKey]string{
		{"outside", "purchasing/order", "GET"}:     "pol.order_get_refused",
		{"outside", "purchasing/order", "POST"}:    "pol.allowed",
		{"inside", "purchasing/basket", "POST"}:    "pol.caller_not_permitted",
		{"outside", "purchasing/catalogue", "GET"}: "pol.allowed",
	} {
		d, ok := table.lookup(k.caller, k.script, k.method)
		if !ok || d.Reason != want {
			t.Errorf("%v: table has %+v (%v), want reason %s", k, d, ok, want)
		}
	}
}

// TestDecisionTableSwitchesWithPolicy: an activation switches at once —
// the next call is decided by the new policy, by its full query until its
// table is compiled — and an old set's table never answers for a new set.
func TestDecisionTableSwitchesWithPolicy(t *testing.T) {
	ctx := context.Background()
	a, audit, _ := newTestAgent(t)
	call := func() *callpb.Response {
		return a.Forward(ctx, "outside", &callpb.Call{Script: "purchasing/order", Method: "GET"})
	}
	if r := call(); r.Status != 200 {
		t.Fatalf("shipped policy: status %d %s, want 200", r.Status, r.Reason)
	}
	changed, err := LoadPolicySetFS(ctx, changedPolicy(t), comps)
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := LoadPolicySet(ctx, "", comps)
	if err != nil {
		t.Fatal(err)
	}
	a.compiling.Wait()
	if a.set.Load().table == nil {
		t.Fatal("no decision table for the shipped policy")
	}
	// Before and after the new set's table is compiled.
	a.SetPolicy(changed)
	for _, when := range []string{"at once", "with its table"} {
		if r := call(); r.Status != 403 || r.Reason != "pol.order_get_refused" {
			t.Fatalf("changed policy %s: status %d %s, want 403 pol.order_get_refused", when, r.Status, r.Reason)
		}
		if rec := audit.last(); rec.Decision != "deny" || rec.Reason != "pol.order_get_refused" {
			t.Fatalf("audit record %+v, want the changed policy's denial", rec)
		}
		a.compiling.Wait()
	}
	// Two activations in a row: the table of the first never lands on
	// the second.
	a.SetPolicy(changed)
	a.SetPolicy(shipped)
	a.compiling.Wait()
	if cur := a.set.Load(); cur.PolicySet != shipped || cur.table == nil {
		t.Fatalf("after two activations: set %p (want the shipped %p), table %v", cur.PolicySet, shipped, cur.table != nil)
	}
	if d, _ := a.set.Load().table.lookup("outside", "purchasing/order", "GET"); d.Reason != "pol.allowed" {
		t.Fatalf("shipped policy's table says %+v for GET purchasing/order, want pol.allowed", d)
	}
	if r := call(); r.Status != 200 {
		t.Fatalf("shipped policy again: status %d %s, want 200", r.Status, r.Reason)
	}
}

// TestDecisionTableNondeterministic: a policy that calls a
// non-deterministic builtin anywhere (here the clock, in a rule partial
// evaluation would settle) gets no table; every call takes the full query.
func TestDecisionTableNondeterministic(t *testing.T) {
	ctx := context.Background()
	fsys := changedPolicy(t).(fstest.MapFS)
	fsys["gate.rego"] = &fstest.MapFile{Data: append(slices.Clone(fsys["gate.rego"].Data), []byte(`
denials contains "pol.after_hours" if {
	input.script == "purchasing/offer"
	time.clock(time.now_ns())[0] > 24
}
`)...)}
	set, err := LoadPolicySetFS(ctx, fsys, comps)
	if err != nil {
		t.Fatal(err)
	}
	table, err := set.Policy.compileTable(ctx, set.Registry, labels)
	if err != nil {
		t.Fatal(err)
	}
	if len(table.entries) != 0 || table.dynamic == 0 {
		t.Fatalf("table of a policy reading the clock: %d entries, %d per call; want none, all per call", len(table.entries), table.dynamic)
	}
	if !slices.Equal(set.Policy.nondeterministic, []string{"time.now_ns"}) {
		t.Fatalf("non-deterministic calls %v, want [time.now_ns]", set.Policy.nondeterministic)
	}
}
