package certstore_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/document/certstore"
)

// FuzzRespond feeds arbitrary bytes as a co-ordination request. Nothing may
// panic, and under strict trust-root policy nothing but the genuine sender
// may end up in the certstore.
func FuzzRespond(f *testing.F) {
	root := newCA(f, "Trust Centre")
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	acme := issue(f, root, "acme", t0.Add(-time.Hour))
	globex := issue(f, root, "globex", t0.Add(-time.Hour))
	pol := certstore.Policy{Roots: pool, Now: func() time.Time { return t0 }}
	s, err := certstore.Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	a := &certstore.Exchanger{ID: "acme", Key: acme.key, Chain: acme.chain, Store: s, Policy: pol}
	req, _, err := a.Request("globex")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(req)
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, msg []byte) {
		s, err := certstore.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		b := &certstore.Exchanger{ID: "globex", Key: globex.key, Chain: globex.chain, Store: s, Policy: pol}
		_, peer, err := b.Respond(msg)
		if err != nil {
			return
		}
		if peer.ID != "acme" || !peer.Certificate.Equal(acme.chain[0]) {
			t.Fatalf("accepted %q with certificate %q", peer.ID, peer.Certificate.Subject)
		}
	})
}
