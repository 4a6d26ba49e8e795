package certstore

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/e2sgate/e2sgate/internal/document/cms"
)

// Automated certificate exchange (the Layer Security certificate exchange):
//
//	A                                            B
//	|-- Request: SignedData{hello, nonce}  ----->|  B verifies, stores A's
//	|   (A's chain embedded)                     |  certificate
//	|<-- Respond: SignedData{reply, nonce} ------|
//	|   (B's chain embedded)                     |
//	A verifies, checks the nonce, stores B's certificate
//
// The body of each message is a JSON Message signed as CMS SignedData
// (internal/document/cms) with the sender's certificate chain embedded. A receiver
// accepts the sender's certificate if it chains to the policy's trust roots,
// or, when the policy allows trust on first use, if no certificate is
// stored for that partner yet (or the same one is). Either way the
// certificate must name the partner id the message claims, be within its
// validity period, and not be marked revoked.

// Message types.
const (
	TypeRequest  = "certificate-exchange-request"
	TypeResponse = "certificate-exchange-response"
)

// DefaultMaxSkew bounds how far a message's time may be from the
// receiver's clock.
const DefaultMaxSkew = 10 * time.Minute

// Message is the signed body of a co-ordination message.
type Message struct {
	Type  string    `json:"type"`
	From  string    `json:"from"`
	To    string    `json:"to"`
	Nonce string    `json:"nonce"`
	Time  time.Time `json:"time"`
}

// Policy decides which exchanged certificates are accepted.
type Policy struct {
	// Roots are the trust anchors; a certificate chaining to them is
	// accepted, and may replace a stored one.
	Roots *x509.CertPool
	// Intermediates help chain building.
	Intermediates []*x509.Certificate
	// KeyUsages are the acceptable extended key usages; empty means any.
	KeyUsages []x509.ExtKeyUsage
	// TrustOnFirstUse accepts a certificate that does not chain to Roots if
	// no other certificate is stored for the partner yet.
	TrustOnFirstUse bool
	// MaxSkew bounds message age and clock skew; zero means DefaultMaxSkew.
	MaxSkew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (p *Policy) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}

// Exchanger runs certificate exchange for one party.
type Exchanger struct {
	// ID is this party's partner id, as the peers store it.
	ID string
	// Key signs the messages; Chain (leaf first) is embedded in them.
	Key   crypto.Signer
	Chain []*x509.Certificate
	// Store receives the peers' certificates.
	Store  *Store
	Policy Policy
}

// Request makes the first signed co-ordination message to partner to. The
// returned nonce must be passed to Complete with the answer.
func (x *Exchanger) Request(to string) (msg []byte, nonce string, err error) {
	if err := validID(to); err != nil {
		return nil, "", fmt.Errorf("exchange request: %w", err)
	}
	n := make([]byte, 16)
	if _, err := rand.Read(n); err != nil {
		return nil, "", fmt.Errorf("exchange request: %w", err)
	}
	nonce = hex.EncodeToString(n)
	msg, err = x.sign(Message{Type: TypeRequest, From: x.ID, To: to, Nonce: nonce})
	if err != nil {
		return nil, "", fmt.Errorf("exchange request to %s: %w", to, err)
	}
	return msg, nonce, nil
}

// Respond handles a request: it verifies the message, stores the sender's
// certificate under the sender's id, and returns the signed answer carrying
// this party's certificate.
func (x *Exchanger) Respond(req []byte) (resp []byte, peer *Entry, err error) {
	m, cert, err := x.accept(req, TypeRequest, "", "")
	if err != nil {
		return nil, nil, fmt.Errorf("exchange respond: %w", err)
	}
	resp, err = x.sign(Message{Type: TypeResponse, From: x.ID, To: m.From, Nonce: m.Nonce})
	if err != nil {
		return nil, nil, fmt.Errorf("exchange respond to %s: %w", m.From, err)
	}
	return resp, &Entry{ID: m.From, Certificate: cert}, nil
}

// Complete handles the answer to Request(to): it checks it answers that
// request, verifies it and stores the peer's certificate.
func (x *Exchanger) Complete(resp []byte, to, nonce string) (*Entry, error) {
	m, cert, err := x.accept(resp, TypeResponse, to, nonce)
	if err != nil {
		return nil, fmt.Errorf("exchange complete: %w", err)
	}
	return &Entry{ID: m.From, Certificate: cert}, nil
}

func (x *Exchanger) sign(m Message) ([]byte, error) {
	m.Time = x.Policy.now().UTC()
	body, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return cms.Sign(body, x.Key, x.Chain, cms.SignOptions{SigningTime: m.Time})
}

// accept verifies a co-ordination message of type typ and stores the
// sender's certificate. For a response, from and nonce must match the
// request.
func (x *Exchanger) accept(der []byte, typ, from, nonce string) (*Message, *x509.Certificate, error) {
	now := x.Policy.now()
	// The signature alone first: it yields the signer certificate and the
	// claims, which decide what trust is needed.
	signed, err := cms.Verify(der, cms.VerifyOptions{SkipTrust: true})
	if err != nil {
		return nil, nil, err
	}
	if len(signed.Signers) != 1 {
		return nil, nil, fmt.Errorf("%d signers: %w", len(signed.Signers), ErrUnexpectedMessage)
	}
	cert := signed.Signers[0].Certificate
	var m Message
	if err := json.Unmarshal(signed.Content, &m); err != nil {
		return nil, nil, fmt.Errorf("body: %w: %w", ErrMalformed, err)
	}
	if err := x.checkClaims(&m, typ, from, nonce, now); err != nil {
		return nil, nil, err
	}
	if err := nameMatches(m.From, cert); err != nil {
		return nil, nil, err
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, nil, fmt.Errorf("certificate of %s: %w", m.From, ErrExpired)
	}
	if err := x.Store.CheckRevocation(cert, nil); err != nil {
		return nil, nil, err
	}

	rooted := false
	if x.Policy.Roots != nil {
		_, err := cms.Verify(der, cms.VerifyOptions{
			Roots:           x.Policy.Roots,
			Intermediates:   x.Policy.Intermediates,
			KeyUsages:       x.Policy.KeyUsages,
			CurrentTime:     now,
			CheckRevocation: x.Store.CheckRevocation,
		})
		switch {
		case err == nil:
			rooted = true
		case errors.Is(err, cms.ErrCertificateRevoked) || errors.Is(err, cms.ErrCertificateExpired):
			return nil, nil, err
		case !x.Policy.TrustOnFirstUse:
			return nil, nil, fmt.Errorf("certificate of %s: %w: %w", m.From, ErrUntrusted, err)
		}
	} else if !x.Policy.TrustOnFirstUse {
		return nil, nil, fmt.Errorf("certificate of %s: no trust roots and no trust on first use: %w", m.From, ErrUntrusted)
	}

	if !rooted {
		// Trust on first use: only if nothing else is pinned for this id.
		old, err := x.Store.Get(m.From)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, nil, err
		case !old.Certificate.Equal(cert):
			return nil, nil, fmt.Errorf("partner %s: %w", m.From, ErrCertificateChanged)
		}
	}
	if err := x.Store.Put(m.From, cert); err != nil {
		return nil, nil, err
	}
	return &m, cert, nil
}

func (x *Exchanger) checkClaims(m *Message, typ, from, nonce string, now time.Time) error {
	if m.Type != typ {
		return fmt.Errorf("type %q, want %q: %w", m.Type, typ, ErrUnexpectedMessage)
	}
	if m.To != x.ID {
		return fmt.Errorf("addressed to %q, not %q: %w", m.To, x.ID, ErrUnexpectedMessage)
	}
	if err := validID(m.From); err != nil {
		return fmt.Errorf("sender: %w", err)
	}
	if m.From == x.ID {
		return fmt.Errorf("message from ourselves: %w", ErrUnexpectedMessage)
	}
	if from != "" && m.From != from {
		return fmt.Errorf("answer from %q, asked %q: %w", m.From, from, ErrUnexpectedMessage)
	}
	if nonce != "" && m.Nonce != nonce {
		return fmt.Errorf("answer to another request: %w", ErrUnexpectedMessage)
	}
	if len(m.Nonce) != 32 {
		return fmt.Errorf("nonce: %w", ErrMalformed)
	}
	skew := x.Policy.MaxSkew
	if skew == 0 {
		skew = DefaultMaxSkew
	}
	if d := now.Sub(m.Time); d > skew || d < -skew {
		return fmt.Errorf("message time %s, now %s: %w", m.Time.Format(time.RFC3339), now.UTC().Format(time.RFC3339), ErrStale)
	}
	return nil
}

// nameMatches requires cert to name partner id: as its subject common
// name, or a DNS, e-mail or URI subject alternative name.
func nameMatches(id string, cert *x509.Certificate) error {
	if cert.Subject.CommonName == id || slices.Contains(cert.DNSNames, id) || slices.Contains(cert.EmailAddresses, id) ||
		slices.ContainsFunc(cert.URIs, func(u *url.URL) bool { return u.String() == id }) {
		return nil
	}
	return fmt.Errorf("partner %q, certificate %q: %w", id, cert.Subject, ErrIdentityMismatch)
}
