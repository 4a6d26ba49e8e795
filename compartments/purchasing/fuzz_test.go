package purchasing

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/keyhandler"
	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// fuzzGate reaches the real key handler; payment and inside are down.
type fuzzGate struct{ kh *keyhandler.Handler }

func (g fuzzGate) Call(ctx context.Context, c *callpb.Call) (*callpb.Response, error) {
	if comp, script, _ := strings.Cut(c.GetScript(), "/"); comp == "keyhandler" {
		return g.kh.Handle(ctx, &callpb.Call{Script: script, Method: c.GetMethod(), Body: c.GetBody(), Meta: c.GetMeta(), Caller: "purchasing"})
	}
	return protocol.Error(503, "gate.target_unavailable", "down"), nil
}

// FuzzHandle sends any body, method, path and signature header to each of
// purchasing's scripts, as a registered buyer's certificate hint or none:
// purchasing answers with a status and never fails the call itself.
func FuzzHandle(f *testing.F) {
	dir := f.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	os.MkdirAll(filepath.Join(dir, "kh"), 0o700)
	kh, err := keyhandler.Open(log, filepath.Join(dir, "kh"))
	if err != nil {
		f.Fatal(err)
	}
	bob := newIdentity(f, "Bob")
	enrol, _ := json.Marshal(map[string]any{"orgs": []any{map[string]any{"id": "acme", "name": "ACME Ltd",
		"members": []any{map[string]any{"name": "Bob", "role": "manager", "certificate": bob.pem(), "limit_cents": 100000, "categories": []string{"software"}}}}}})
	os.MkdirAll(filepath.Join(dir, "p"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "p", "enrolment.json"), enrol, 0o644); err != nil {
		f.Fatal(err)
	}
	h, err := New(log, fuzzGate{kh}, filepath.Join(dir, "p"))
	if err != nil {
		f.Fatal(err)
	}
	scripts := []string{"catalogue", "basket", "private", "login", "buyers", "offer", "accept", "order", "delivered", "delivery", "ack", "statement"}
	f.Add(uint8(1), "POST", "", []byte(softBasket), "", true)
	f.Add(uint8(3), "POST", "", []byte(`{"challenge":"x","signature":"AAAA"}`), "", false)
	f.Add(uint8(3), "GET", "", []byte(nil), "", false)
	f.Add(uint8(4), "POST", "", []byte(`{"time":"2026-01-01T00:00:00Z","add":{"name":"Eve"}}`), "MIIB", true)
	f.Add(uint8(6), "POST", "/o-1", []byte(`{"acceptance":"`+strings.Repeat("A", 40)+`"}`), "", true)
	f.Add(uint8(7), "GET", "/../../etc/passwd", []byte(nil), "", true)
	f.Add(uint8(8), "POST", "", []byte(`{"order_id":"o-1","status":"delivered"}`), "", false)
	f.Add(uint8(10), "POST", "/o-1", []byte(`{}`), "", false)
	f.Fuzz(func(t *testing.T, which uint8, method, pathInfo string, body []byte, sig string, hint bool) {
		meta := map[string]string{"REQUEST_METHOD": method, "CONTENT_TYPE": "application/json"}
		if hint {
			meta["SSL_CLIENT_CERT"] = bob.pem()
		}
		if sig != "" {
			meta["HTTP_E2S_SIGNATURE"] = sig
		}
		script := scripts[int(which)%len(scripts)]
		caller := "outside"
		if script == "delivered" {
			caller = "inside"
		}
		resp, err := h.Handle(context.Background(), &callpb.Call{Script: script, Method: method, PathInfo: pathInfo, Body: body, Meta: meta, Caller: caller})
		if err != nil {
			return // an error is the gate's 502; no answer crosses
		}
		if resp.Status < 100 || resp.Status > 599 {
			t.Fatalf("%s %s: status %d", method, script, resp.Status)
		}
	})
}
