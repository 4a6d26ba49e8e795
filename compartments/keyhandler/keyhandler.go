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
}

// Open loads the merchant credential from dir, creating it on first start.
func Open(log *slog.Logger, dir string) (*Handler, error) {
	keyPath, certPath := filepath.Join(dir, "merchant.key"), filepath.Join(dir, "merchant.pem")
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
	return &Handler{log: log, key: key, cert: cert}, nil
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

// Handle serves "sign" (body → CMS SignedData, DER), "countersign"
// (offer signed by merchant and buyer → contract), "protect" (document →
// compressed, signed, encrypted for a recipient) and "certificate".
func (h *Handler) Handle(_ context.Context, c *callpb.Call) (*callpb.Response, error) {
	switch c.GetScript() {
	case "countersign":
		return h.countersign(c), nil
	case "protect":
		return h.protect(c), nil
	case "sign":
		if len(c.GetBody()) == 0 {
			return protocol.Error(400, "empty", "nothing to sign"), nil
		}
		der, err := cms.Sign(c.GetBody(), h.key, []*x509.Certificate{h.cert}, cms.SignOptions{Hash: crypto.SHA256})
		if err != nil {
			h.log.Error("sign failed", "req_id", c.GetReqId(), "error", err)
			return protocol.Error(500, "sign_failed", "signing failed"), nil
		}
		h.log.Info("signed", "req_id", c.GetReqId(), "caller", c.GetCaller(), "bytes", len(c.GetBody()))
		return &callpb.Response{Status: 200, Headers: map[string]string{"Content-Type": "application/pkcs7-mime; smime-type=signed-data"}, Body: der}, nil
	case "certificate":
		return &callpb.Response{Status: 200, Headers: map[string]string{"Content-Type": "application/x-pem-file"},
			Body: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.cert.Raw})}, nil
	}
	return protocol.Error(404, "no_handler", "no such handler"), nil
}
