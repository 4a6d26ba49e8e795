package e2e

import (
	"encoding/json"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// The record of a decision is durable before its answer leaves the gate:
// the gate agent is killed with SIGKILL the moment an answer arrives (an
// allowed basket, then a refusal), and once the supervisor has restarted
// it, the log holds the record of every such answer, and `e2sctl audit
// verify` passes over the log the crashes left.
func TestGateKilledAfterAnswerKeepsRecord(t *testing.T) {
	a := startAppliance(t, "")
	count := func(pred func(auditlog.Record) bool) int {
		recs, err := auditlog.Read(a.auditLog())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range recs {
			if pred(r) {
				n++
			}
		}
		return n
	}
	basketAllowed := func(r auditlog.Record) bool {
		return r.Script == "purchasing/basket" && r.Decision == "allow" && r.Status == 200
	}
	killGate := func() {
		t.Helper()
		st, err := a.status()
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(st.GatePid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill the gate agent (pid %d): %v", st.GatePid, err)
		}
		waitFor(t, "the gate agent restarted and serving", func() bool {
			s, _ := a.status()
			c, _, _ := a.get("/cgi-bin/purchasing/catalogue")
			return s.GatePid != 0 && s.GatePid != st.GatePid && c == 200
		})
	}

	const rounds = 3
	for i := range rounds {
		resp, body := a.do("POST", "/cgi-bin/purchasing/basket", "application/json", []byte(basket))
		if resp.StatusCode != 200 {
			t.Fatalf("basket: %d %s", resp.StatusCode, body)
		}
		killGate()
		if n := count(basketAllowed); n != i+1 {
			t.Fatalf("after %d answered baskets and as many kills of the gate agent, the log holds %d of their records", i+1, n)
		}
	}

	// A refusal is a decision too; its answer names the record.
	resp, body := a.do("POST", "/cgi-bin/purchasing/no-such-script", "application/json", []byte(basket))
	var denial struct {
		Error string `json:"error"`
		ReqID string `json:"req_id"`
	}
	if resp.StatusCode != 404 || json.Unmarshal(body, &denial) != nil || denial.ReqID == "" {
		t.Fatalf("unknown script: %d %s, want 404 with a req_id", resp.StatusCode, body)
	}
	killGate()
	if n := count(func(r auditlog.Record) bool { return r.ReqID == denial.ReqID && r.Reason == "reg.unknown_script" }); n != 1 {
		t.Fatalf("the refusal %s answered before the kill has %d records in the log, want 1", denial.ReqID, n)
	}

	code, out := a.ctl(0, "audit", "verify", "-log", a.auditLog(), "-pubkey", filepath.Join(a.dataDir(), "audit", "audit.pub"))
	if code != 0 {
		t.Fatalf("e2sctl audit verify after %d kills of the gate agent: exit %d\n%s", rounds+1, code, out)
	}
}
