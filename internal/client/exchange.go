package client

import (
	"crypto/x509"
	"encoding/json"
	"fmt"

	"github.com/e2sgate/e2sgate/internal/document/certstore"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

// Certificate exchange by signed co-ordination messages carried as files:
// A runs ExchangeRequest and sends the file to B; B runs
// ExchangeRespond, which stores A's certificate, and sends the answer back;
// A runs ExchangeComplete with its request and the answer, which stores B's
// certificate. The request file is A's record of the pending exchange: it
// is signed by A, so Complete reads the partner id and nonce back from it.

func (c *Client) exchanger() (*certstore.Exchanger, error) {
	cred, err := c.credential()
	if err != nil {
		return nil, err
	}
	s, err := c.store()
	if err != nil {
		return nil, err
	}
	roots, err := c.roots()
	if err != nil {
		return nil, err
	}
	return &certstore.Exchanger{ID: c.cfg.ID, Key: cred.Signer, Chain: cred.Chain, Store: s,
		Policy: certstore.Policy{Roots: roots, TrustOnFirstUse: c.cfg.Certstore.TrustOnFirstUse,
			MaxSkew: c.cfg.Certstore.MaxMessageAge}}, nil
}

// ExchangeRequest writes the first co-ordination message to partner to.
func (c *Client) ExchangeRequest(to, out string) error {
	x, err := c.exchanger()
	if err != nil {
		return err
	}
	msg, _, err := x.Request(to)
	if err != nil {
		return err
	}
	if err := writeOutputs(Output{Path: out, Data: msg, Mode: 0o644}); err != nil {
		return err
	}
	c.log.Info("exchange requested", "partner", to, "out", out)
	return nil
}

// ExchangeRespond handles a request: it stores the sender's certificate and
// writes our signed answer to out.
func (c *Client) ExchangeRespond(in, out string) (*PartnerInfo, error) {
	if err := distinct(in, out); err != nil {
		return nil, err
	}
	req, err := readInput(in)
	if err != nil {
		return nil, err
	}
	x, err := c.exchanger()
	if err != nil {
		return nil, err
	}
	resp, peer, err := x.Respond(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	if err := writeOutputs(Output{Path: out, Data: resp, Mode: 0o644}); err != nil {
		return nil, err
	}
	c.log.Info("exchange answered", "partner", peer.ID, "fingerprint", fingerprint(peer.Certificate))
	return &PartnerInfo{ID: peer.ID, Subject: peer.Certificate.Subject.String(), NotAfter: peer.Certificate.NotAfter, Fingerprint: fingerprint(peer.Certificate)}, nil
}

// ExchangeComplete handles the answer in resp to our request in req and
// stores the partner's certificate.
func (c *Client) ExchangeComplete(req, resp string) (*PartnerInfo, error) {
	reqDER, err := readInput(req)
	if err != nil {
		return nil, err
	}
	respDER, err := readInput(resp)
	if err != nil {
		return nil, err
	}
	x, err := c.exchanger()
	if err != nil {
		return nil, err
	}
	// Our own request, signed by us: the partner id and nonce it asked with.
	s, err := cms.Verify(reqDER, cms.VerifyOptions{Registered: []*x509.Certificate{x.Chain[0]}})
	if err != nil {
		return nil, fmt.Errorf("request %s (must be one 'e2s exchange request' wrote with this credential): %w", req, err)
	}
	var m certstore.Message
	if err := json.Unmarshal(s.Content, &m); err != nil || m.Type != certstore.TypeRequest || m.From != x.ID {
		return nil, fmt.Errorf("request %s: not our exchange request: %w", req, ErrBadInput)
	}
	peer, err := x.Complete(respDER, m.To, m.Nonce)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", resp, err)
	}
	c.log.Info("exchange completed", "partner", peer.ID, "fingerprint", fingerprint(peer.Certificate))
	return &PartnerInfo{ID: peer.ID, Subject: peer.Certificate.Subject.String(), NotAfter: peer.Certificate.NotAfter, Fingerprint: fingerprint(peer.Certificate)}, nil
}
