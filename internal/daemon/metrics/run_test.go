package metrics

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

func appendRecord(t *testing.T, path string, r auditlog.Record) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := json.Marshal(r)
	if _, err := f.Write(append(b, '\n')); err != nil {
		t.Fatal(err)
	}
}

// TestRunFollowsTheAuditLogs: records written before Run are not counted
// again; records written after are, and the root-only socket serves them.
func TestRunFollowsTheAuditLogs(t *testing.T) {
	dir := t.TempDir()
	src := Sources{GateLog: filepath.Join(dir, "audit.log"), AdminLog: filepath.Join(dir, "admin.log"), Socket: filepath.Join(dir, "metrics.sock")}
	old := auditlog.Record{Caller: "outside", Script: "purchasing/old", Decision: "allow", Reason: "pol.allowed"}
	appendRecord(t, src.GateLog, old)
	// The admin log does not exist yet: Run waits for it.

	m := New(nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := m.Run(ctx, src, slog.New(slog.DiscardHandler))
	defer func() { cancel(); <-done }()

	appendRecord(t, src.GateLog, auditlog.Record{Time: time.Now(), Caller: "outside", Script: "purchasing/catalogue", Decision: "allow", Reason: "pol.allowed"})
	appendRecord(t, src.AdminLog, auditlog.Record{Caller: "ops", Script: "e2sctl policy.show", Decision: "allow"})

	want := []string{
		`e2sgate_gate_calls_total{decision="allow",script="purchasing/catalogue"} 1`,
		`e2sgate_admin_commands_total{command="policy.show",decision="allow"} 1`,
	}
	var text string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := m.Text()
		if err != nil {
			t.Fatal(err)
		}
		if text = string(b); strings.Contains(text, want[0]) && strings.Contains(text, want[1]) {
			break
		}
	}
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("missing %s", w)
		}
	}
	if strings.Contains(text, "purchasing/old") {
		t.Error("a record written before Run was counted")
	}

	st, err := os.Stat(src.Socket)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("metrics socket: %v %v", st, err)
	}
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", src.Socket)
	}}}
	resp, err := c.Get("http://metrics/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), want[0]) {
		t.Fatalf("socket serves:\n%s", body)
	}
}
