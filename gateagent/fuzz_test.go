package gateagent

import (
	"context"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/policies"
)

// FuzzForward sends random calls through the real registry, policy and
// filters to fake targets. Whatever a caller sends: one audit record per
// call, its fields bounded and valid UTF-8; an answer 200 only for a
// registered script the caller may call; a denial names its reason.
func FuzzForward(f *testing.F) {
	f.Add(uint8(0), "purchasing/catalogue", "GET", "", "", "", []byte(nil), "")
	f.Add(uint8(0), "purchasing/basket", "POST", "/x", "a=1", "cert:ab", []byte(`{"items":[]}`), "application/json")
	f.Add(uint8(1), "keyhandler/sign-offer", "POST", "", "", "", []byte("x"), "application/json")
	f.Add(uint8(0), "purchasing/../keyhandler/sign", "POST", "", "", "", []byte("{"), "application/json; charset=utf-8")
	f.Add(uint8(4), "payment/authorize", "POST", "", "", "\xff<<<", []byte(`{"pan":"4111111111111111"}`), "application/json")
	a, audit, _ := newTestAgent(f)
	a.SetLimits(Limits{Concurrent: 1 << 20, PerSecond: 1e12, Burst: 1 << 30})
	set := a.set.Load()
	f.Fuzz(func(t *testing.T, who uint8, script, method, pathInfo, query, user string, body []byte, ctype string) {
		caller := comps[int(who)%len(comps)]
		call := &callpb.Call{Script: script, Method: method, PathInfo: pathInfo, Query: query, User: user, Body: body,
			Meta: map[string]string{"CONTENT_TYPE": ctype}}
		before := len(audit.all())
		resp := a.Forward(context.Background(), caller, call)
		recs := audit.all()
		if len(recs) != before+1 {
			t.Fatalf("%d audit records for one call", len(recs)-before)
		}
		r := recs[len(recs)-1]
		for _, s := range []string{r.Script, r.User, r.ClaimedUser, r.CallerReqID, r.Detail} {
			if len(s) > maxDetail+len("…") || !utf8.ValidString(s) {
				t.Fatalf("audit field unbounded or not UTF-8: %q", s)
			}
		}
		if r.Caller != caller || int32(r.Status) != resp.Status || resp.Status < 100 || resp.Status > 599 {
			t.Fatalf("record %+v for caller %s, answer %d", r, caller, resp.Status)
		}
		if resp.Status == 200 {
			reg := set.Registry.Lookup(script)
			if reg == nil || r.Decision != "allow" || !slices.Contains(reg.Callers, caller) {
				t.Fatalf("200 for %s from %s (registration %v, decision %s)", script, caller, reg, r.Decision)
			}
		} else if r.Decision == "deny" && (resp.Reason == "" || resp.Headers["X-E2S-Reason"] != resp.Reason) {
			t.Fatalf("denial %d without its reason id: %+v", resp.Status, resp)
		}
	})
}

// FuzzParseRegistry: any registry file is loaded or refused, never half:
// what loads names only compartments that exist and has a full chain.
func FuzzParseRegistry(f *testing.F) {
	f.Add([]byte(goodEntry))
	if b, err := fs.ReadFile(policies.Default, "registry.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("version: 1\nscripts:\n  a/b: ~\n"))
	f.Add([]byte(goodEntry + "    max_rate: 1e400\n"))
	f.Add([]byte(goodEntry + "    max_rate: 0.5\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		reg, err := ParseRegistry(data, "registry.yaml", comps)
		if err != nil {
			return
		}
		for name, r := range reg.Scripts {
			if !strings.HasPrefix(name, r.Target+"/") || r.Timeout <= 0 || len(r.chain) < 2 || !(r.MaxRate >= 0 && r.MaxRate <= 1e6) {
				t.Fatalf("loaded a bad registration %s: %+v", name, r)
			}
		}
	})
}
