package purchasing

import (
	"context"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// TestProvenUser: purchasing names to the gate the person whose signature
// it checked (protocol.ProvenUser), and only that person: not the call's
// own user, not a TLS certificate, not a signer it refused. The calls it
// makes for that person carry them; the back office's delivery callback
// is for no one.
func TestProvenUser(t *testing.T) {
	f := newFixture(t)
	bob := provenUser(Fingerprint(f.bob.cert))
	proven := func(r *callpb.Response) string { return r.GetHeaders()[protocol.ProvenUser] }

	if r := f.as(&f.bob, "private", "GET", "", nil); r.GetStatus() != 200 || proven(r) != bob {
		t.Fatalf("signed private = %d, proven %q, want %q", r.GetStatus(), proven(r), bob)
	}
	if r := f.as(nil, "catalogue", "GET", "", nil); r.GetStatus() != 200 || proven(r) != "" {
		t.Fatalf("anonymous catalogue = %d, proven %q", r.GetStatus(), proven(r))
	}
	// outside's word: a user and the manager's certificate, no signature.
	forged := &callpb.Call{Script: "private", Method: "GET", Caller: "outside", User: provenUser(Fingerprint(f.mia.cert)),
		Meta: map[string]string{"REQUEST_METHOD": "GET", "SSL_CLIENT_CERT": f.mia.pem()}}
	if r, _ := f.h.Handle(context.Background(), forged); r.GetStatus() != 401 || proven(r) != "" {
		t.Fatalf("forged user = %d, proven %q", r.GetStatus(), proven(r))
	}
	// A refused signer is no one.
	stale := sigReq{id: &f.bob, method: "GET", script: "private"}
	meta := f.meta(stale)
	meta["HTTP_E2S_SIGNATURE"] = "bm90IGEgc2lnbmF0dXJl"
	if r := f.send(stale, meta); r.GetStatus() != 401 || proven(r) != "" {
		t.Fatalf("bad signature = %d, proven %q", r.GetStatus(), proven(r))
	}

	// The acceptance's calls (countersign, authorise, order to the back
	// office) are made for Bob.
	_, acc, doc := f.signOffer(f.bob, softBasket)
	from := len(f.gate.calls)
	if r := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 201 || proven(r) != bob {
		t.Fatalf("accept = %d %s, proven %q", r.GetStatus(), r.GetBody(), proven(r))
	}
	forBob := map[string]bool{}
	for i := from; i < len(f.gate.calls); i++ {
		if f.gate.users[i] != bob {
			t.Errorf("%s made for %q, want %q", f.gate.calls[i], f.gate.users[i], bob)
		}
		forBob[f.gate.calls[i]] = true
	}
	for _, s := range []string{"keyhandler/countersign", "payment/authorize", "inside/order"} {
		if !forBob[s] {
			t.Errorf("accept made no %s call (made %v)", s, f.gate.calls[from:])
		}
	}
	// inside's confirmation: captured for no one.
	from = len(f.gate.calls)
	body := []byte(`{"order_id":"` + doc.OfferID + `","delivered_at":"2026-11-23T02:00:00Z"}`)
	if r := f.as(nil, "delivered", "POST", "", body); r.GetStatus() != 200 || proven(r) != "" {
		t.Fatalf("delivered = %d %s, proven %q", r.GetStatus(), r.GetBody(), proven(r))
	}
	for i := from; i < len(f.gate.calls); i++ {
		if f.gate.users[i] != "" {
			t.Errorf("%s after the back office's confirmation made for %q", f.gate.calls[i], f.gate.users[i])
		}
	}
	if len(f.gate.calls) == from {
		t.Error("the confirmation made no call (capture)")
	}
}
