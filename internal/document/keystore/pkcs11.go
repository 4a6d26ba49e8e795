//go:build cgo

package keystore

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// PKCS11Config selects a token.
type PKCS11Config struct {
	// Module is the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so.
	Module string
	// TokenLabel selects the token.
	TokenLabel string
	// PIN is the user PIN.
	PIN string
}

// PKCS11 keeps credentials on a PKCS#11 token. Keys are generated on the
// token as sensitive, non-extractable objects (crypto11's defaults) and
// are used through it; Import of a private key is refused. The chain is
// stored as certificate objects: the leaf under the credential's label and
// CKA_ID, further certificates under "<label>#1", "<label>#2", ...
type PKCS11 struct {
	ctx *crypto11.Context
}

var _ Keystore = (*PKCS11)(nil)

// OpenPKCS11 logs into the token. A wrong PIN fails with ErrWrongPassword.
func OpenPKCS11(cfg PKCS11Config) (*PKCS11, error) {
	ctx, err := crypto11.Configure(&crypto11.Config{Path: cfg.Module, TokenLabel: cfg.TokenLabel, Pin: cfg.PIN})
	if err != nil {
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) || errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LEN_RANGE)) {
			return nil, fmt.Errorf("open token %q: %w", cfg.TokenLabel, ErrWrongPassword)
		}
		return nil, fmt.Errorf("open token %q: %w", cfg.TokenLabel, err)
	}
	return &PKCS11{ctx: ctx}, nil
}

// Generate makes a key pair on the token and stores a self-signed
// certificate beside it.
func (p *PKCS11) Generate(label string, kt KeyType) (*Credential, error) {
	if kt.rsaBits() == 0 && kt.curve() == nil {
		return nil, fmt.Errorf("generate %s: key type %q: %w", label, kt, ErrUnsupported)
	}
	if err := p.free(label); err != nil {
		return nil, fmt.Errorf("generate %s: %w", label, err)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("generate %s: %w", label, err)
	}
	var (
		key crypto11.Signer
		err error
	)
	switch {
	case kt.rsaBits() > 0:
		key, err = p.ctx.GenerateRSAKeyPairWithLabel(id, []byte(label), kt.rsaBits())
	case kt.curve() != nil:
		key, err = p.ctx.GenerateECDSAKeyPairWithLabel(id, []byte(label), kt.curve())
	default:
		err = fmt.Errorf("key type %q: %w", kt, ErrUnsupported)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s: %w", label, err)
	}
	cert, err := selfSigned(label, key)
	if err != nil {
		_ = key.Delete()
		return nil, fmt.Errorf("generate %s: %w", label, err)
	}
	chain := []*x509.Certificate{cert}
	if err := p.writeChain(id, label, chain); err != nil {
		_ = key.Delete()
		return nil, fmt.Errorf("generate %s: %w", label, err)
	}
	return &Credential{Label: label, Signer: key, Chain: chain}, nil
}

// Import is refused: keys on a token are generated there.
func (p *PKCS11) Import(label string, _ crypto.PrivateKey, _ []*x509.Certificate) error {
	return fmt.Errorf("import %s into token: %w", label, ErrUnsupported)
}

// SetChain replaces the chain of the key under label.
func (p *PKCS11) SetChain(label string, chain []*x509.Certificate) error {
	if err := validLabel(label); err != nil {
		return fmt.Errorf("set chain: %w", err)
	}
	key, err := p.findKey(label)
	if err != nil {
		return fmt.Errorf("set chain of %s: %w", label, err)
	}
	if err := checkChain(key.Public(), chain); err != nil {
		return fmt.Errorf("set chain of %s: %w", label, err)
	}
	idAttr, err := p.ctx.GetAttribute(key, crypto11.CkaId)
	if err != nil {
		return fmt.Errorf("set chain of %s: key id: %w", label, err)
	}
	if err := p.deleteChain(label); err != nil {
		return fmt.Errorf("set chain of %s: %w", label, err)
	}
	if err := p.writeChain(idAttr.Value, label, chain); err != nil {
		return fmt.Errorf("set chain of %s: %w", label, err)
	}
	return nil
}

// Credential finds the key and chain under label.
func (p *PKCS11) Credential(label string) (*Credential, error) {
	if err := validLabel(label); err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	key, err := p.findKey(label)
	if err != nil {
		return nil, fmt.Errorf("credential %s: %w", label, err)
	}
	var chain []*x509.Certificate
	for i := 0; ; i++ {
		cert, err := p.ctx.FindCertificate(nil, []byte(chainLabel(label, i)), nil)
		if err != nil {
			return nil, fmt.Errorf("credential %s: certificate %d: %w", label, i, err)
		}
		if cert == nil {
			break
		}
		chain = append(chain, cert)
	}
	if err := checkChain(key.Public(), chain); err != nil {
		return nil, fmt.Errorf("credential %s: %w", label, err)
	}
	return &Credential{Label: label, Signer: key, Chain: chain}, nil
}

// List returns the labels of the key pairs on the token.
func (p *PKCS11) List() ([]string, error) {
	keys, err := p.ctx.FindAllKeyPairs()
	if err != nil {
		return nil, fmt.Errorf("list token keys: %w", err)
	}
	labels := make([]string, 0, len(keys))
	for _, k := range keys {
		a, err := p.ctx.GetAttribute(k, crypto11.CkaLabel)
		if err != nil {
			return nil, fmt.Errorf("list token keys: label: %w", err)
		}
		labels = append(labels, string(a.Value))
	}
	slices.Sort(labels)
	return labels, nil
}

// Delete destroys the key pair and chain under label.
func (p *PKCS11) Delete(label string) error {
	if err := validLabel(label); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	key, err := p.findKey(label)
	if err != nil {
		return fmt.Errorf("delete %s: %w", label, err)
	}
	if err := p.deleteChain(label); err != nil {
		return fmt.Errorf("delete %s: %w", label, err)
	}
	if err := key.Delete(); err != nil {
		return fmt.Errorf("delete %s: %w", label, err)
	}
	return nil
}

// Close logs out and releases the token.
func (p *PKCS11) Close() error {
	if err := p.ctx.Close(); err != nil {
		return fmt.Errorf("close token: %w", err)
	}
	return nil
}

// Context exposes the crypto11 context, e.g. to read key attributes.
func (p *PKCS11) Context() *crypto11.Context { return p.ctx }

func (p *PKCS11) findKey(label string) (crypto11.Signer, error) {
	keys, err := p.ctx.FindKeyPairs(nil, []byte(label))
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, ErrNotFound
	}
	return keys[0], nil
}

func (p *PKCS11) free(label string) error {
	if err := validLabel(label); err != nil {
		return err
	}
	_, err := p.findKey(label)
	switch {
	case err == nil:
		return ErrExists
	case errors.Is(err, ErrNotFound):
		return nil
	default:
		return err
	}
}

func (p *PKCS11) writeChain(id []byte, label string, chain []*x509.Certificate) error {
	for i, c := range chain {
		if err := p.ctx.ImportCertificateWithLabel(id, []byte(chainLabel(label, i)), c); err != nil {
			return fmt.Errorf("store certificate %d: %w", i, err)
		}
	}
	return nil
}

func (p *PKCS11) deleteChain(label string) error {
	for i := 0; ; i++ {
		l := []byte(chainLabel(label, i))
		cert, err := p.ctx.FindCertificate(nil, l, nil)
		if err != nil {
			return fmt.Errorf("find certificate %d: %w", i, err)
		}
		if cert == nil {
			return nil
		}
		if err := p.ctx.DeleteCertificate(nil, l, nil); err != nil {
			return fmt.Errorf("delete certificate %d: %w", i, err)
		}
	}
}

func chainLabel(label string, i int) string {
	if i == 0 {
		return label
	}
	return label + "#" + strconv.Itoa(i)
}
