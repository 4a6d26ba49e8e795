// Package keyhandler is the merchant's personal security environment
// (E2S §6.2.3): the merchant key is made here on first start and never
// leaves this compartment; other compartments ask it, through the gate
// agent, to sign.
package keyhandler

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/internal/durable"
)

// Handler serves the key handler's scripts.
type Handler struct {
	log  *slog.Logger
	key  crypto.Signer
	cert *x509.Certificate
	// previous are the certificates of rotated keys: the offers they
	// signed are still this merchant's.
	previous []*x509.Certificate
	now      func() time.Time
	// Audit reports a refused signing request as an audit event (the
	// program prints it for the supervisor to relay); nil: logged only.
	Audit func(Event)
}

// Event is an audit event line ({"e2s_event": ...}) the key handler
// prints; its kinds and reasons are declared in its manifest.
type Event struct {
	Kind     string `json:"kind"`
	Reason   string `json:"reason"`
	Decision string `json:"decision"`
	Detail   string `json:"detail"`
}

// Files in the key handler's data directory.
const (
	KeyFile       = "merchant.key"   // the merchant's private key (PKCS #8 PEM, 0600); never leaves
	CertFile      = "merchant.pem"   // its certificate
	PreviousDir   = "previous"       // certificates of rotated keys, <serial hex>.pem
	RotateRequest = "rotate.request" // written by the supervisor (e2sctl key rotate): a new key at the next start
)

// Open loads the merchant credential from dir, creating it on first start,
// and makes a new one first if a rotation is requested (RotateRequest):
// the old certificate goes to PreviousDir, so that what the old key signed
// stays verifiable and its offers can still be countersigned; the old key
// is overwritten.
func Open(log *slog.Logger, dir string) (*Handler, error) {
	keyPath, certPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)
	if _, err := os.Stat(filepath.Join(dir, RotateRequest)); err == nil {
		if err := rotate(log, dir); err != nil {
			return nil, fmt.Errorf("rotate the merchant key in %s: %w", dir, err)
		}
	}
	key, cert, err := load(keyPath, certPath)
	if errors.Is(err, fs.ErrNotExist) {
		key, cert, err = create(keyPath, certPath)
		if err == nil {
			log.Info("merchant key created", "subject", cert.Subject.String())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("merchant credential in %s: %w", dir, err)
	}
	previous, err := loadPrevious(filepath.Join(dir, PreviousDir))
	if err != nil {
		return nil, fmt.Errorf("previous merchant certificates in %s: %w", dir, err)
	}
	return &Handler{log: log, key: key, cert: cert, previous: previous, now: time.Now}, nil
}

// rotate keeps the current certificate in PreviousDir, makes a new key and
// certificate beside the old ones and renames them over, then removes the
// request. A crash at any step leaves the request, and the next start
// does it again.
func rotate(log *slog.Logger, dir string) error {
	keyPath, certPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)
	if b, err := os.ReadFile(certPath); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return fmt.Errorf("%s is not PEM", certPath)
		}
		old, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, PreviousDir), 0o755); err != nil {
			return err
		}
		if err := durable.WriteFile(filepath.Join(dir, PreviousDir, old.SerialNumber.Text(16)+".pem"), b, 0o644); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	_, cert, err := create(keyPath+".new", certPath+".new")
	if err != nil {
		return err
	}
	if err := os.Rename(keyPath+".new", keyPath); err != nil {
		return err
	}
	if err := os.Rename(certPath+".new", certPath); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, RotateRequest)); err != nil {
		return err
	}
	log.Info("merchant key rotated", "serial", cert.SerialNumber.Text(16))
	return nil
}

func loadPrevious(dir string) ([]*x509.Certificate, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.pem"))
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s is not PEM", n)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func load(keyPath, certPath string) (crypto.Signer, *x509.Certificate, error) {
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	kblk, _ := pem.Decode(kb)
	cblk, _ := pem.Decode(cb)
	if kblk == nil || cblk == nil {
		return nil, nil, fmt.Errorf("not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("key is %T, not a signer", k)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(c.PublicKey) {
		return nil, nil, fmt.Errorf("%s is not the certificate of %s", certPath, keyPath)
	}
	return signer, c, nil
}

func create(keyPath, certPath string) (crypto.Signer, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "e2sgate merchant", Organization: []string{"e2sgate"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(3, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := durable.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := durable.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}

// Certificate is the merchant certificate.
func (h *Handler) Certificate() *x509.Certificate { return h.cert }

// merchant is the name this key signs for (its certificate's CN).
func (h *Handler) merchant() string { return h.cert.Subject.CommonName }

// ownCertificate reports whether c is this merchant's certificate, now or
// before a rotation.
func (h *Handler) ownCertificate(c *x509.Certificate) bool {
	return c.Equal(h.cert) || slices.ContainsFunc(h.previous, c.Equal)
}

// Handle serves the signing purposes (purpose.go: "sign-offer",
// "sign-session", "sign-statement", "countersign" for the contract,
// "protect" for a delivery) and "certificate". A handler that is not one
// of these is 404; there is no way to have the key sign bytes as such.
func (h *Handler) Handle(_ context.Context, c *callpb.Call) (*callpb.Response, error) {
	switch c.GetScript() {
	case "sign-offer":
		return h.signDocument(c, "offer", func(b []byte) *refusal { _, r := h.checkOffer(b, h.now()); return r }), nil
	case "sign-session":
		return h.signDocument(c, "session", func(b []byte) *refusal { return checkSession(b, h.now()) }), nil
	case "sign-statement":
		return h.signDocument(c, "statement", func(b []byte) *refusal { return checkStatement(b, h.now()) }), nil
	case "countersign":
		return h.countersign(c), nil
	case "protect":
		return h.protect(c), nil
	case "certificate":
		return &callpb.Response{Status: 200, Headers: map[string]string{"Content-Type": "application/x-pem-file"},
			Body: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.cert.Raw})}, nil
	}
	return protocol.Error(404, "no_handler", "no such handler"), nil
}

// signDocument signs the call's body as attached SignedData if check
// passes it as a document of purpose.
func (h *Handler) signDocument(c *callpb.Call, purpose string, check func([]byte) *refusal) *callpb.Response {
	if r := check(c.GetBody()); r != nil {
		return h.refused(c, purpose, r)
	}
	der, err := cms.Sign(c.GetBody(), h.key, []*x509.Certificate{h.cert}, cms.SignOptions{Hash: crypto.SHA256})
	if err != nil {
		h.log.Error("sign failed", "req_id", c.GetReqId(), "purpose", purpose, "error", err)
		return protocol.Error(500, "sign_failed", "signing failed")
	}
	h.log.Info("signed", "req_id", c.GetReqId(), "caller", c.GetCaller(), "purpose", purpose, "bytes", len(c.GetBody()))
	return &callpb.Response{Status: 200, Headers: map[string]string{"Content-Type": signedDataType}, Body: der}
}

// refused answers a signing request that failed its purpose's check: 422
// with the reason id (the gate records it as the target's reason), a log
// line and an audit event naming the purpose and the caller.
func (h *Handler) refused(c *callpb.Call, purpose string, r *refusal) *callpb.Response {
	h.log.Warn("signing refused", "req_id", c.GetReqId(), "caller", c.GetCaller(), "purpose", purpose, "reason", r.reason, "detail", r.msg)
	if h.Audit != nil {
		h.Audit(Event{Kind: "sign", Reason: r.reason, Decision: "deny",
			Detail: fmt.Sprintf("purpose %s, caller %s, req_id %s: %s", purpose, c.GetCaller(), c.GetReqId(), r.msg)})
	}
	resp := protocol.Error(422, r.reason, "refused to sign for purpose "+purpose+": "+r.msg)
	resp.Reason = r.reason
	return resp
}
