package certstore_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/document/certstore"
)

// BenchmarkExchange runs one full exchange (request, respond, complete)
// under a trust-root policy, certificates stored on disk.
func BenchmarkExchange(b *testing.B) {
	root := newCA(b, "Trust Centre")
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	pol := certstore.Policy{Roots: pool, Now: func() time.Time { return t0 }}
	acme := issue(b, root, "acme", t0.Add(-time.Hour))
	globex := issue(b, root, "globex", t0.Add(-time.Hour))
	sa, err := certstore.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	sb, err := certstore.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	a := &certstore.Exchanger{ID: "acme", Key: acme.key, Chain: acme.chain, Store: sa, Policy: pol}
	bb := &certstore.Exchanger{ID: "globex", Key: globex.key, Chain: globex.chain, Store: sb, Policy: pol}
	for b.Loop() {
		req, nonce, err := a.Request("globex")
		if err != nil {
			b.Fatal(err)
		}
		resp, _, err := bb.Respond(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.Complete(resp, "globex", nonce); err != nil {
			b.Fatal(err)
		}
	}
}
