package inside

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// fakeGate stands in for the gate agent and purchasing/delivered.
type fakeGate struct {
	mu     sync.Mutex
	calls  []*callpb.Call
	status int
}

func (g *fakeGate) Call(_ context.Context, c *callpb.Call) (*callpb.Response, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, c)
	return protocol.JSON(g.status, map[string]bool{"ok": g.status == 200}), nil
}

func TestOrderSpooledAndConfirmationDelivered(t *testing.T) {
	dir := t.TempDir()
	g := &fakeGate{status: 503}
	h, err := New(slog.New(slog.DiscardHandler), g, Config{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	order := `{"order_id": "0123456789abcdef0123456789abcdef", "org": "acme", "gross_cents": 52605}`
	r, _ := h.Handle(context.Background(), &callpb.Call{Script: "order", Method: "POST", Body: []byte(order)})
	if r.GetStatus() != 201 {
		t.Fatalf("order = %d %s", r.GetStatus(), r.GetBody())
	}
	spooled := filepath.Join(dir, "spool", "orders", "0123456789abcdef0123456789abcdef.json")
	b, err := os.ReadFile(spooled)
	if err != nil || !json.Valid(b) {
		t.Fatalf("spooled order %q: %v", b, err)
	}
	if r, _ := h.Handle(context.Background(), &callpb.Call{Script: "order", Method: "POST", Body: []byte(order)}); r.GetStatus() != 200 {
		t.Fatalf("repeated hand-over = %d", r.GetStatus())
	}
	for _, bad := range []string{`{}`, `{"order_id":"../x"}`, `[1]`} {
		if r, _ := h.Handle(context.Background(), &callpb.Call{Script: "order", Method: "POST", Body: []byte(bad)}); r.GetStatus() != 400 {
			t.Errorf("order %s = %d", bad, r.GetStatus())
		}
	}

	// The back office confirms; purchasing is down at first: the
	// confirmation stays and is delivered once purchasing accepts it.
	conf := filepath.Join(dir, "spool", "confirmations", "0123456789abcdef0123456789abcdef.json")
	os.WriteFile(conf, []byte(`{"order_id":"0123456789abcdef0123456789abcdef","delivered_at":"2026-11-23T01:00:00Z"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "spool", "confirmations", "evil.json"), []byte(`{"order_id":"other"}`), 0o644)
	if n := h.Confirmations(context.Background()); n != 0 {
		t.Fatalf("%d confirmed while purchasing refuses", n)
	}
	if _, err := os.Stat(conf); err != nil {
		t.Fatal("confirmation lost while purchasing refused it")
	}
	g.status = 200
	if n := h.Confirmations(context.Background()); n != 1 {
		t.Fatalf("confirmed %d, want 1", n)
	}
	if _, err := os.Stat(conf); !os.IsNotExist(err) {
		t.Fatal("confirmation still pending after purchasing accepted it")
	}
	last := g.calls[len(g.calls)-1]
	var sent Confirmation
	if last.Script != "purchasing/delivered" || json.Unmarshal(last.Body, &sent) != nil || sent.OrderID != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("call %s %s", last.Script, last.Body)
	}
	if n := h.Confirmations(context.Background()); n != 0 {
		t.Fatalf("confirmed again: %d", n)
	}
}
