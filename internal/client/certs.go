package client

import (
	"fmt"
	"time"
)

// PartnerInfo describes a certstore entry.
type PartnerInfo struct {
	ID          string
	Subject     string
	NotAfter    time.Time
	Fingerprint string
	Revoked     string // reason and date, empty if not revoked
}

// ListPartners describes every partner certificate.
func (c *Client) ListPartners() ([]PartnerInfo, error) {
	s, err := c.store()
	if err != nil {
		return nil, err
	}
	entries, err := s.List()
	if err != nil {
		return nil, fmt.Errorf("certstore list: %w", err)
	}
	out := make([]PartnerInfo, 0, len(entries))
	for _, e := range entries {
		p := PartnerInfo{ID: e.ID, Subject: e.Certificate.Subject.String(), NotAfter: e.Certificate.NotAfter, Fingerprint: fingerprint(e.Certificate)}
		if r := e.Revocation; r != nil {
			p.Revoked = fmt.Sprintf("revoked %s: %s", r.At.Format(time.DateOnly), r.Reason)
		}
		out = append(out, p)
	}
	return out, nil
}

// AddPartner stores the certificate in the PEM (or DER) file path as
// partner id, e.g. one obtained out of band. Compare the fingerprint it
// returns with the partner's before relying on it.
func (c *Client) AddPartner(id, path string) (*PartnerInfo, error) {
	certs, err := readCertificates(path)
	if err != nil {
		return nil, fmt.Errorf("certstore add %s: %w", id, err)
	}
	s, err := c.store()
	if err != nil {
		return nil, err
	}
	if err := s.Put(id, certs[0]); err != nil {
		return nil, fmt.Errorf("certstore add %s: %w", id, err)
	}
	c.log.Info("partner certificate added", "partner", id, "fingerprint", fingerprint(certs[0]))
	return &PartnerInfo{ID: id, Subject: certs[0].Subject.String(), NotAfter: certs[0].NotAfter, Fingerprint: fingerprint(certs[0])}, nil
}

// RevokePartner marks partner id's certificate revoked: documents,
// acknowledgements and header signatures by it are refused from now on.
func (c *Client) RevokePartner(id, reason string) error {
	s, err := c.store()
	if err != nil {
		return err
	}
	if err := s.Revoke(id, reason, time.Now()); err != nil {
		return fmt.Errorf("certstore revoke %s: %w", id, err)
	}
	c.log.Info("partner certificate revoked", "partner", id, "reason", reason)
	return nil
}
