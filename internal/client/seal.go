package client

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/e2sgate/e2sgate/internal/document/envelope"
	"github.com/e2sgate/e2sgate/internal/document/envelope/pb"
)

// SealResult describes a sealed envelope.
type SealResult struct {
	ID                 string
	PublicKeySignature string
}

// Seal encrypts the file in into a TRISA sealed envelope for the RSA public
// key in keyFile (PEM PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE), or for our
// own credential when keyFile is empty, and writes it to out.
func (c *Client) Seal(keyFile, in, out string) (*SealResult, error) {
	if err := distinct(in, out); err != nil {
		return nil, err
	}
	payload, err := readInput(in)
	if err != nil {
		return nil, err
	}
	pub, err := c.sealKey(keyFile)
	if err != nil {
		return nil, err
	}
	env, err := envelope.SealPayload(payload, pub)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", in, err)
	}
	b, err := envelope.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", in, err)
	}
	if err := writeOutputs(Output{Path: out, Data: b, Mode: 0o600}); err != nil {
		return nil, err
	}
	c.log.Info("sealed", "in", in, "out", out, "envelope", env.Id)
	return &SealResult{ID: env.Id, PublicKeySignature: env.PublicKeySignature}, nil
}

// sealKey is the RSA public key in keyFile, or our own when it is empty.
func (c *Client) sealKey(keyFile string) (crypto.PublicKey, error) {
	if keyFile == "" {
		cert, err := c.Certificate()
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	return readPublicKey(keyFile)
}

// unseal opens the sealed envelope in with our RSA credential.
func (c *Client) unseal(in string) (*envelope.Clear, *pb.SecureEnvelope, error) {
	b, err := readInput(in)
	if err != nil {
		return nil, nil, err
	}
	env, err := envelope.Unmarshal(b)
	if err != nil {
		return nil, nil, fmt.Errorf("unseal %s: %w", in, err)
	}
	cred, err := c.credential()
	if err != nil {
		return nil, nil, err
	}
	dec, err := cred.Decrypter()
	if err != nil {
		return nil, nil, fmt.Errorf("unseal %s: %w", in, err)
	}
	clear, err := envelope.Open(env, dec)
	if err != nil {
		if mine, e := envelope.PublicKeySignature(cred.Signer.Public()); e == nil && mine != env.PublicKeySignature {
			return nil, nil, fmt.Errorf("unseal %s (sealed to %s, your key is %s): %w", in, env.PublicKeySignature, mine, err)
		}
		return nil, nil, fmt.Errorf("unseal %s: %w", in, err)
	}
	return clear, env, nil
}

// Unseal opens the sealed envelope in with our RSA credential and writes
// the payload to out. The HMAC is checked before anything is decrypted.
func (c *Client) Unseal(in, out string) (*SealResult, error) {
	if err := distinct(in, out); err != nil {
		return nil, err
	}
	clear, env, err := c.unseal(in)
	if err != nil {
		return nil, err
	}
	if err := writeOutputs(Output{Path: out, Data: clear.Payload, Mode: 0o600}); err != nil {
		return nil, err
	}
	c.log.Info("unsealed", "in", in, "out", out, "envelope", clear.ID)
	return &SealResult{ID: clear.ID, PublicKeySignature: env.PublicKeySignature}, nil
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("public key %s: no PEM block: %w", path, ErrBadInput)
	}
	var pub crypto.PublicKey
	switch b.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(b.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(b.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(b.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("public key %s: PEM %q, want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE: %w", path, b.Type, ErrBadInput)
	}
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w: %w", path, ErrBadInput, err)
	}
	return pub, nil
}
