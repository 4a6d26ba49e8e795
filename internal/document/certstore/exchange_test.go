package certstore_test

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/document/certstore"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

func exchanger(t *testing.T, id string, p *party, pol certstore.Policy) *certstore.Exchanger {
	t.Helper()
	s, err := certstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if pol.Now == nil {
		pol.Now = func() time.Time { return t0 }
	}
	return &certstore.Exchanger{ID: id, Key: p.key, Chain: p.chain, Store: s, Policy: pol}
}

// TestExchange runs the certificate exchange flow: A's first signed message carries
// A's certificate, B stores it and answers with its own, A stores B's. A
// then verifies a document B signs later against the stored certificate.
func TestExchange(t *testing.T) {
	root := newCA(t, "Trust Centre")
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	tests := []struct {
		name   string
		a, b   *party
		policy certstore.Policy
	}{
		{"trust on first use, self-signed", issue(t, nil, "acme", t0.Add(-time.Hour)), issue(t, nil, "globex", t0.Add(-time.Hour)),
			certstore.Policy{TrustOnFirstUse: true}},
		{"trust roots", issue(t, root, "acme", t0.Add(-time.Hour)), issue(t, root, "globex", t0.Add(-time.Hour)),
			certstore.Policy{Roots: pool}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := exchanger(t, "acme", tt.a, tt.policy)
			b := exchanger(t, "globex", tt.b, tt.policy)

			req, nonce, err := a.Request("globex")
			if err != nil {
				t.Fatal(err)
			}
			resp, peer, err := b.Respond(req)
			if err != nil {
				t.Fatal(err)
			}
			if peer.ID != "acme" || !peer.Certificate.Equal(tt.a.chain[0]) {
				t.Fatalf("B accepted %q %q", peer.ID, peer.Certificate.Subject)
			}
			if e, err := b.Store.Get("acme"); err != nil || !e.Certificate.Equal(tt.a.chain[0]) {
				t.Fatalf("B's certstore: %v, %v", e, err)
			}
			got, err := a.Complete(resp, "globex", nonce)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != "globex" || !got.Certificate.Equal(tt.b.chain[0]) {
				t.Fatalf("A accepted %q", got.ID)
			}

			// A can now check B's signatures without certificates in them.
			doc, err := cms.Sign([]byte("invoice 42"), tt.b.key, tt.b.chain, cms.SignOptions{OmitCertificates: true})
			if err != nil {
				t.Fatal(err)
			}
			registered, err := a.Store.Certificates()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cms.Verify(doc, cms.VerifyOptions{Registered: registered, CurrentTime: t0}); err != nil {
				t.Fatalf("verify B's document with A's certstore: %v", err)
			}
		})
	}
}

// TestExchangeRefusals checks every reason to refuse a request, and that a
// refused request stores nothing.
func TestExchangeRefusals(t *testing.T) {
	root := newCA(t, "Trust Centre")
	other := newCA(t, "Other CA")
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	tofu := certstore.Policy{TrustOnFirstUse: true}
	strict := certstore.Policy{Roots: pool}
	acme := issue(t, root, "acme", t0.Add(-time.Hour))
	globex := issue(t, root, "globex", t0.Add(-time.Hour))

	tests := []struct {
		name    string
		sender  *party
		from    string
		to      string
		policy  certstore.Policy
		prepare func(t *testing.T, b *certstore.Exchanger)
		tamper  func([]byte) []byte
		skew    time.Duration // receiver's clock minus sender's
		want    error
	}{
		{name: "self-signed without trust on first use", sender: issue(t, nil, "acme", t0.Add(-time.Hour)), policy: strict, want: certstore.ErrUntrusted},
		{name: "issued by another CA", sender: issue(t, other, "acme", t0.Add(-time.Hour)), policy: strict, want: certstore.ErrUntrusted},
		{name: "no roots, no trust on first use", sender: acme, policy: certstore.Policy{}, want: certstore.ErrUntrusted},
		{name: "certificate names someone else", sender: issue(t, root, "mallory", t0.Add(-time.Hour)), policy: strict, want: certstore.ErrIdentityMismatch},
		{name: "changed certificate on first use only", sender: issue(t, nil, "acme", t0.Add(-time.Hour)), policy: tofu,
			prepare: func(t *testing.T, b *certstore.Exchanger) { put(t, b, "acme", issue(t, nil, "acme", t0).chain[0]) },
			want:    certstore.ErrCertificateChanged},
		{name: "revoked certificate", sender: acme, policy: strict,
			prepare: func(t *testing.T, b *certstore.Exchanger) {
				put(t, b, "acme", acme.chain[0])
				if err := b.Store.Revoke("acme", "key compromise", t0); err != nil {
					t.Fatal(err)
				}
			},
			want: certstore.ErrRevoked},
		{name: "expired certificate", sender: issue(t, root, "acme", t0.Add(-48*time.Hour)), policy: tofu, want: certstore.ErrExpired},
		{name: "addressed to another party", sender: acme, to: "initech", policy: strict, want: certstore.ErrUnexpectedMessage},
		{name: "stale message", sender: acme, policy: strict, skew: time.Hour, want: certstore.ErrStale},
		{name: "message from the future", sender: acme, policy: strict, skew: -time.Hour, want: certstore.ErrStale},
		{name: "flipped signature byte", sender: acme, policy: strict, tamper: func(b []byte) []byte { b[len(b)-3] ^= 1; return b }, want: cms.ErrBadSignature},
		{name: "truncated message", sender: acme, policy: strict, tamper: func(b []byte) []byte { return b[:len(b)/2] }, want: cms.ErrMalformed},
		{name: "response where request expected", sender: globex, from: "globex", policy: strict, want: certstore.ErrUnexpectedMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := tt.from
			if from == "" {
				from = "acme"
			}
			to := tt.to
			if to == "" {
				to = "globex"
			}
			a := exchanger(t, from, tt.sender, tt.policy)
			recvPolicy := tt.policy
			recvPolicy.Now = func() time.Time { return t0.Add(tt.skew) }
			b := exchanger(t, "globex", globex, recvPolicy)
			if tt.prepare != nil {
				tt.prepare(t, b)
			}
			before, _ := b.Store.List()

			var msg []byte
			var err error
			if tt.from == "globex" {
				// A response, made by a party answering a request.
				c := exchanger(t, "acme", acme, tofu)
				req, _, err := c.Request("globex")
				if err != nil {
					t.Fatal(err)
				}
				msg, _, err = exchanger(t, "globex", globex, tofu).Respond(req)
				if err != nil {
					t.Fatal(err)
				}
				b.ID = "acme"
			} else if msg, _, err = a.Request(to); err != nil {
				t.Fatal(err)
			}
			if tt.tamper != nil {
				msg = tt.tamper(msg)
			}
			resp, _, err := b.Respond(msg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Respond err = %v, want %v", err, tt.want)
			}
			if resp != nil {
				t.Fatal("refused request was answered")
			}
			after, _ := b.Store.List()
			if len(after) != len(before) {
				t.Fatalf("refused request changed the certstore: %d -> %d entries", len(before), len(after))
			}
		})
	}
}

// TestExchangeRotationUnderRoots shows that a CA-issued certificate may
// replace a stored one (key rotation), where trust on first use may not.
func TestExchangeRotationUnderRoots(t *testing.T) {
	root := newCA(t, "Trust Centre")
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	oldCert := issue(t, root, "acme", t0.Add(-time.Hour))
	newCert := issue(t, root, "acme", t0.Add(-time.Hour))
	b := exchanger(t, "globex", issue(t, root, "globex", t0.Add(-time.Hour)), certstore.Policy{Roots: pool, TrustOnFirstUse: true})
	put(t, b, "acme", oldCert.chain[0])
	req, _, err := exchanger(t, "acme", newCert, certstore.Policy{}).Request("globex")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Respond(req); err != nil {
		t.Fatal(err)
	}
	if e, _ := b.Store.Get("acme"); !e.Certificate.Equal(newCert.chain[0]) {
		t.Fatal("rotated certificate not stored")
	}
}

func TestCompleteChecksTheAnswer(t *testing.T) {
	tofu := certstore.Policy{TrustOnFirstUse: true}
	acme := issue(t, nil, "acme", t0.Add(-time.Hour))
	globex := issue(t, nil, "globex", t0.Add(-time.Hour))
	initech := issue(t, nil, "initech", t0.Add(-time.Hour))
	a := exchanger(t, "acme", acme, tofu)
	req1, nonce1, err := a.Request("globex")
	if err != nil {
		t.Fatal(err)
	}
	req2, _, err := a.Request("initech")
	if err != nil {
		t.Fatal(err)
	}
	resp1, _, err := exchanger(t, "globex", globex, tofu).Respond(req1)
	if err != nil {
		t.Fatal(err)
	}
	resp2, _, err := exchanger(t, "initech", initech, tofu).Respond(req2)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		resp  []byte
		to    string
		nonce string
		want  error
	}{
		{"answer to another request", resp1, "globex", "00000000000000000000000000000000", certstore.ErrUnexpectedMessage},
		{"answer from another party", resp2, "globex", nonce1, certstore.ErrUnexpectedMessage},
		{"a request instead of an answer", req1, "globex", nonce1, certstore.ErrUnexpectedMessage},
		{"the right answer", resp1, "globex", nonce1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := a.Complete(tt.resp, tt.to, tt.nonce); !errors.Is(err, tt.want) {
				t.Fatalf("Complete err = %v, want %v", err, tt.want)
			}
		})
	}
	ids, _ := a.Store.List()
	if len(ids) != 1 || ids[0].ID != "globex" {
		t.Fatalf("A's certstore holds %v, want only globex", ids)
	}
}

func put(t *testing.T, x *certstore.Exchanger, id string, c *x509.Certificate) {
	t.Helper()
	if err := x.Store.Put(id, c); err != nil {
		t.Fatal(err)
	}
}
