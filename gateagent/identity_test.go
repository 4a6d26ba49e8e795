package gateagent

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/policies"
)

// TestForwardUserIsProven: a call's user is the person a compartment that
// proves identity vouched for, never outside's word. Outside's claim is
// kept as claimed_user and the policy sees no user; purchasing's answer
// names the person it proved (protocol.ProvenUser, removed before the
// answer goes on) and the calls it makes for that person carry it.
func TestForwardUserIsProven(t *testing.T) {
	const bob, mia = "buyer:" + "b0b", "cert:" + "m1a"
	tests := []struct {
		name, caller, script, user string
		proven                     map[string]string // answer headers the target adds
		wantUser, wantClaimed      string
		wantTargetUser             string // the user the target received
		wantStatus                 int32
		wantReason                 string
	}{
		{name: "outside's claim is detail only", caller: "outside", script: "purchasing/private", user: mia,
			wantClaimed: mia, wantStatus: 200, wantReason: "pol.allowed"},
		{name: "purchasing names the person it proved", caller: "outside", script: "purchasing/private", user: mia,
			proven: map[string]string{protocol.ProvenUser: bob}, wantUser: bob, wantClaimed: mia, wantStatus: 200, wantReason: "pol.allowed"},
		{name: "proved without a claim", caller: "outside", script: "purchasing/private",
			proven: map[string]string{protocol.ProvenUser: bob}, wantUser: bob, wantStatus: 200, wantReason: "pol.allowed"},
		{name: "purchasing calls for the person it proved", caller: "purchasing", script: "keyhandler/certificate", user: bob,
			wantUser: bob, wantTargetUser: bob, wantStatus: 200, wantReason: "pol.allowed"},
		{name: "a target that may not prove names no one", caller: "purchasing", script: "keyhandler/certificate", user: bob,
			proven: map[string]string{protocol.ProvenUser: mia}, wantUser: bob, wantTargetUser: bob, wantStatus: 200, wantReason: "pol.allowed"},
		{name: "nor in another spelling", caller: "outside", script: "keyhandler/certificate", user: mia,
			proven: map[string]string{"e2s-proven-user": bob}, wantClaimed: mia, wantStatus: 200, wantReason: "pol.allowed"},
		// The policy sees the proven user: a script requiring roles has no
		// one to hold them on outside's claim, and a person on purchasing's.
		{name: "policy sees no user on outside's claim", caller: "outside", script: "purchasing/roles", user: mia,
			wantClaimed: mia, wantStatus: 403, wantReason: "pol.no_proven_user"},
		{name: "policy sees purchasing's user", caller: "purchasing", script: "purchasing/roles", user: bob,
			wantUser: bob, wantStatus: 403, wantReason: "pol.role_missing"},
	}
	reg, _ := policies.Default.ReadFile("registry.yaml")
	reg = append(reg, []byte(`
  purchasing/roles:
    target: purchasing
    handler: roles
    methods: [GET]
    callers: [outside, purchasing]
    clearance: unclassified
    roles: [manager]
`)...)
	registry, err := LoadRegistry(fstest.MapFS{"registry.yaml": {Data: reg}}, "registry.yaml", comps)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, audit, _ := newTestAgent(t)
			a.ProveIdentity("purchasing")
			a.SetPolicy(&PolicySet{Registry: registry, Policy: a.set.Load().Policy})
			var got *callpb.Call
			answer := targetFunc(func(_ context.Context, c *callpb.Call) (*callpb.Response, error) {
				got = c
				h := map[string]string{"Content-Type": "text/plain"}
				for k, v := range tt.proven {
					h[k] = v
				}
				return &callpb.Response{Status: 200, Headers: h, Body: []byte("ok")}, nil
			})
			a.Attach("purchasing", answer)
			a.Attach("keyhandler", answer)
			resp := a.Forward(context.Background(), tt.caller, &callpb.Call{Script: tt.script, Method: "GET", User: tt.user})
			if resp.Status != tt.wantStatus {
				t.Fatalf("status %d %s, want %d", resp.Status, resp.Body, tt.wantStatus)
			}
			for k := range resp.Headers {
				if k != "Content-Type" && k != "X-E2S-Reason" {
					t.Errorf("answer carries %s", k)
				}
			}
			r := audit.last()
			if r.User != tt.wantUser || r.ClaimedUser != tt.wantClaimed || r.Reason != tt.wantReason {
				t.Fatalf("record user %q claimed %q reason %s, want %q %q %s", r.User, r.ClaimedUser, r.Reason, tt.wantUser, tt.wantClaimed, tt.wantReason)
			}
			if got != nil && got.User != tt.wantTargetUser {
				t.Fatalf("target got user %q, want %q", got.User, tt.wantTargetUser)
			}
			if (got != nil) != (tt.wantStatus == 200) {
				t.Fatalf("target reached = %v", got != nil)
			}
		})
	}
}
