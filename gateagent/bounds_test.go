package gateagent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// A caller's words reach the audit log clipped, whatever their size: one
// call of 20 MiB once wrote ~126 MiB of audit (JSON escapes '<' as six
// bytes). An oversized field is refused before it is matched.
func TestForwardBoundsCallerFields(t *testing.T) {
	huge := strings.Repeat("<", 1<<20)
	tests := []struct {
		name   string
		call   *callpb.Call
		status int32
		reason string
	}{
		{"huge script", &callpb.Call{Script: huge, Method: "GET"}, 400, "gate.field_too_long"},
		{"huge user", &callpb.Call{Script: "purchasing/catalogue", Method: "GET", User: huge}, 400, "gate.field_too_long"},
		{"huge method", &callpb.Call{Script: "purchasing/catalogue", Method: huge}, 400, "gate.field_too_long"},
		{"huge path", &callpb.Call{Script: "purchasing/catalogue", Method: "GET", PathInfo: huge}, 400, "gate.field_too_long"},
		{"huge query", &callpb.Call{Script: "purchasing/catalogue", Method: "GET", Query: huge}, 400, "gate.field_too_long"},
		{"huge meta", &callpb.Call{Script: "purchasing/catalogue", Method: "GET", Meta: map[string]string{"HTTP_X": huge}}, 400, "gate.field_too_long"},
		{"huge req id is only clipped", &callpb.Call{Script: "purchasing/catalogue", Method: "GET", ReqId: huge}, 200, "pol.allowed"},
		{"script at its bound", &callpb.Call{Script: strings.Repeat("<", maxScript), Method: "GET"}, 404, "reg.unknown_script"},
		{"invalid UTF-8 script", &callpb.Call{Script: "purchasing/\xff\xfe", Method: "GET"}, 404, "reg.unknown_script"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := auditlog.OpenWith(filepath.Join(dir, "audit.log"), auditlog.Options{Syslog: "off"})
			if err != nil {
				t.Fatal(err)
			}
			a, _, targets := newTestAgent(t)
			a.audit = l
			resp := a.Forward(context.Background(), "outside", tt.call)
			if resp.Status != tt.status || resp.Reason != "" && resp.Reason != tt.reason {
				t.Fatalf("status %d %s, want %d %s", resp.Status, resp.Reason, tt.status, tt.reason)
			}
			if tt.status == 400 && targets["purchasing"].got != nil {
				t.Fatal("an oversized call was forwarded")
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			recs, err := auditlog.Read(filepath.Join(dir, "audit.log"))
			if err != nil || len(recs) != 1 {
				t.Fatalf("records %d, %v", len(recs), err)
			}
			r := recs[0]
			if r.Reason != tt.reason || len(r.Script) > maxScript+len("…") || len(r.User) > maxUser+len("…") || len(r.ClaimedUser) > maxUser+len("…") ||
				len(r.CallerReqID) > maxReqID+len("…") || len(r.Detail) > maxDetail+len("…") {
				t.Fatalf("record %.300v", r)
			}
			if n := fileSize(t, filepath.Join(dir, "audit.log")); n > 8<<10 {
				t.Fatalf("one call wrote %d bytes of audit", n)
			}
		})
	}
}

// The gate names every call: a caller that reuses a real request id gets a
// new one, and `e2sctl explain ID` (a search by req_id) finds the genuine
// record, not the forgery.
func TestForwardReqIDIsTheGates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := auditlog.OpenWith(path, auditlog.Options{Syslog: "off"})
	if err != nil {
		t.Fatal(err)
	}
	a, _, targets := newTestAgent(t)
	a.audit = l
	a.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	a.Forward(context.Background(), "purchasing", &callpb.Call{Script: "keyhandler/sign-offer", Method: "POST", Body: []byte("{}"),
		Meta: map[string]string{"CONTENT_TYPE": "application/json"}, ReqId: "mine"})
	genuine := targets["keyhandler"].got.GetReqId()
	if genuine == "mine" || genuine == "" {
		t.Fatalf("forwarded req id %q: the caller's", genuine)
	}
	// outside replays that id with a call of its own.
	resp := a.Forward(context.Background(), "outside", &callpb.Call{Script: "keyhandler/sign-offer", Method: "POST", ReqId: genuine})
	if strings.Contains(string(resp.Body), genuine) {
		t.Fatalf("denial names the reused id: %s", resp.Body)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := auditlog.Search(path, auditlog.Filter{ReqID: genuine}, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("search: %v %v", recs, err)
	}
	if r := recs[0]; r.Caller != "purchasing" || r.Decision != "allow" || r.CallerReqID != "mine" {
		t.Fatalf("explain would show %+v", r)
	}
	all, _ := auditlog.Read(path)
	if forged := all[1]; forged.ReqID == genuine || forged.CallerReqID != genuine {
		t.Fatalf("forged record %+v", forged)
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// At 90 % of its quota the audit log gets a warning record (counted by the
// metrics as an event); at full the gate answers 503 gate.audit_full, never
// an unaudited answer.
func TestForwardAuditQuota(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, _, _ := newTestAgent(t)
	l, err := auditlog.OpenWith(path, auditlog.Options{Syslog: "off", Quota: 16 << 10, OnQuota: a.QuotaWarning})
	if err != nil {
		t.Fatal(err)
	}
	a.audit = l
	var last *callpb.Response
	for range 1000 {
		last = a.Forward(context.Background(), "outside", &callpb.Call{Script: "purchasing/catalogue", Method: "GET"})
		if last.Status != 200 {
			break
		}
	}
	if last.Status != 503 || last.Reason != "gate.audit_full" {
		t.Fatalf("full log: %d %s", last.Status, last.Reason)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	warnings, err := auditlog.Search(path, auditlog.Filter{Reason: "audit.quota_warning"}, 0)
	if err != nil || len(warnings) != 1 || warnings[0].Event != "gate" || !strings.Contains(warnings[0].Detail, "% full") {
		t.Fatalf("warnings %+v %v", warnings, err)
	}
}
