package client

import (
	"errors"
	"fmt"

	"github.com/e2sgate/e2sgate/internal/document/cms"
)

// SignHeader returns the header signature value over the exact bytes of
// the file: a detached CMS SignedData, SHA-512, no certificates, base64.
func (c *Client) SignHeader(file string) (string, error) {
	body, _, err := openInput(file)
	if err != nil {
		return "", err
	}
	defer body.Close()
	cred, err := c.credential()
	if err != nil {
		return "", err
	}
	v, err := cms.SignHeaderStream(body, cred.Signer, cred.Certificate())
	if err != nil {
		return "", fmt.Errorf("sign-header %s: %w", file, err)
	}
	return v, nil
}

// VerifyHeader checks a header signature value over the file against
// partner from's registered certificate, which must be valid and not
// revoked.
func (c *Client) VerifyHeader(from, file, value string) error {
	body, _, err := openInput(file)
	if err != nil {
		return err
	}
	defer body.Close()
	p, err := c.partner(from)
	if err != nil {
		return err
	}
	s, err := c.store()
	if err != nil {
		return err
	}
	_, err = cms.VerifyHeaderStream(value, body, p.Certificate, cms.HeaderVerifyOptions{CheckRevocation: s.CheckRevocation})
	if errors.Is(err, cms.ErrSignerNotFound) {
		// Only the registered certificate counts; another signer is not
		// "unknown", it is the wrong one.
		return fmt.Errorf("verify-header %s: not signed with %s's registered certificate (%v): %w", file, from, err, ErrWrongSender)
	}
	if err != nil {
		return fmt.Errorf("verify-header %s from %s: %w", file, from, err)
	}
	return nil
}
