package inside

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

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
	if n := h.Confirmations(context.Background()); n != 0 {
		t.Fatalf("confirmed %d before the retry wait was over", n)
	}
	h.now = func() time.Time { return time.Now().Add(time.Minute) }
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

// TestConfirmationRetriesBackOffAndStop: a confirmation purchasing keeps
// refusing is tried with a growing wait, then given up with one audit
// event, not re-sent every poll forever.
func TestConfirmationRetriesBackOffAndStop(t *testing.T) {
	dir := t.TempDir()
	g := &fakeGate{status: 503}
	h, err := New(slog.New(slog.DiscardHandler), g, Config{PollMS: 100}, dir)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	h.Audit = func(e Event) { events = append(events, e) }
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	const id = "0123456789abcdef0123456789abcdef"
	os.WriteFile(filepath.Join(dir, "spool", "confirmations", id+".json"), []byte(`{"order_id":"`+id+`"}`), 0o644)

	// Polled every 100 ms for an hour: the calls are bounded by the
	// back-off and the give-up, not by the number of polls.
	for range 36000 {
		h.Confirmations(context.Background())
		now = now.Add(100 * time.Millisecond)
	}
	if len(g.calls) != maxAttempts {
		t.Fatalf("purchasing/delivered sent %d times in an hour, want %d then stop", len(g.calls), maxAttempts)
	}
	if len(events) != 1 || events[0].Reason != "inside.confirmation_given_up" {
		t.Fatalf("audit events %+v, want one given-up event", events)
	}
	if _, err := os.Stat(filepath.Join(dir, "spool", "confirmations", id+".json")); err != nil {
		t.Fatal("a given-up confirmation must stay in the spool for an operator")
	}

	// After a restart (a new handler) it is tried again and delivered.
	g.status = 200
	h2, _ := New(slog.New(slog.DiscardHandler), g, Config{}, dir)
	if n := h2.Confirmations(context.Background()); n != 1 {
		t.Fatalf("after restart confirmed %d, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "spool", "done", id+".json")); err != nil {
		t.Fatalf("confirmation not in done/: %v", err)
	}
}

// TestDeliveredConfirmationNotResent: when purchasing accepted a delivery
// but the move to done/ fails, only the move is retried; purchasing is not
// told again on every poll.
func TestDeliveredConfirmationNotResent(t *testing.T) {
	dir := t.TempDir()
	g := &fakeGate{status: 200}
	h, err := New(slog.New(slog.DiscardHandler), g, Config{PollMS: 100}, dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	h.now = func() time.Time { return now }
	const id = "0123456789abcdef0123456789abcdef"
	os.WriteFile(filepath.Join(dir, "spool", "confirmations", id+".json"), []byte(`{"order_id":"`+id+`"}`), 0o644)
	done := filepath.Join(dir, "spool", "done")
	os.Remove(done)
	os.WriteFile(done, nil, 0o644) // done/ is not a directory: every move fails
	for range 100 {
		if n := h.Confirmations(context.Background()); n != 0 {
			t.Fatalf("confirmed %d while done/ is broken", n)
		}
		now = now.Add(100 * time.Millisecond)
	}
	if len(g.calls) != 1 {
		t.Fatalf("purchasing/delivered sent %d times, want 1", len(g.calls))
	}
	os.Remove(done)
	os.Mkdir(done, 0o755)
	now = now.Add(maxRetryWait)
	if n := h.Confirmations(context.Background()); n != 1 || len(g.calls) != 1 {
		t.Fatalf("after repair: confirmed %d with %d calls, want 1 and 1", n, len(g.calls))
	}
}
