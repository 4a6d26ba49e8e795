// Package acquirer is a simulated acquirer's payment gateway for tests and
// `make run`: it speaks the iso package's ISO 8583 over TLS, approves
// authorisations within a card's available funds, declines an over-limit
// amount (51) and an unknown card (14), captures approved authorisations
// once (0220/0230, a repeated advice is answered 00 and not charged again),
// releases an authorisation on a reversal advice (0420/0430) and never
// answers an authorisation of a configured magic amount or card, so that
// timeouts can be tested. Every charge is appended to a ledger (JSON lines) that
// tests read to prove what was and was not charged.
package acquirer

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"sync"

	"github.com/e2sgate/e2sgate/compartments/payment/iso"
)

// Card is one card the simulated issuer knows.
type Card struct {
	Expiry         string `json:"expiry"` // YYMM
	AvailableCents int64  `json:"available_cents"`
}

// DefaultCards are the test cards (all Luhn-valid).
func DefaultCards() map[string]Card {
	return map[string]Card{
		"4111111111111111": {Expiry: "3012", AvailableCents: 10_000_000},
		"5555555555554444": {Expiry: "3012", AvailableCents: 50_000}, // 500.00: small limit
		"4000000000000077": {Expiry: "3012", AvailableCents: 10_000_000},
	}
}

// Entry is one ledger line.
type Entry struct {
	MTI          string `json:"mti"`
	RRN          string `json:"rrn"`
	STAN         string `json:"stan"`
	PANLast4     string `json:"pan_last4"`
	AmountCents  int64  `json:"amount_cents"`
	Currency     string `json:"currency"`
	ResponseCode string `json:"response_code"`
	AuthCode     string `json:"auth_code,omitempty"`
}

// Server is the simulator.
type Server struct {
	Cards map[string]Card
	// TimeoutAmount: an authorisation of exactly this many cents is never
	// answered (0: none). TimeoutPAN: nor is any request for this card.
	TimeoutAmount int64
	TimeoutPAN    string
	Ledger        string // path; "" keeps no ledger
	Log           *slog.Logger

	mu       sync.Mutex
	auths    map[string]*auth // by RRN
	ledgerMu sync.Mutex
}

type auth struct {
	pan      string
	amount   int64
	code     string
	captured bool
}

// Serve accepts TLS connections on l until it is closed.
func (s *Server) Serve(l net.Listener, cert tls.Certificate) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	for {
		c, err := tl.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go s.serveConn(c)
	}
}

func (s *Server) serveConn(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		b, err := iso.ReadFrame(r)
		if err != nil {
			return
		}
		resp, answer := s.Handle(b)
		if !answer {
			s.Log.Info("not answering (timeout simulation)")
			continue
		}
		out, err := resp.Pack()
		if err != nil {
			s.Log.Error("pack response", "error", err)
			return
		}
		if err := iso.WriteFrame(c, out); err != nil {
			return
		}
	}
}

// Handle decides one request; answer false means: stay silent.
func (s *Server) Handle(b []byte) (iso.Response, bool) {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	req, err := iso.UnpackRequest(b)
	if err != nil {
		s.Log.Warn("bad request", "error", err)
		return iso.Response{MTI: iso.MTIAuthResponse, STAN: "000000", RRN: "000000000000", ResponseCode: iso.FormatError}, true
	}
	if req.MTI == iso.MTIAuthRequest && (req.PAN == s.TimeoutPAN || (s.TimeoutAmount != 0 && req.AmountCents == s.TimeoutAmount)) {
		return iso.Response{}, false
	}
	resp := iso.Response{MTI: iso.ResponseMTI(req.MTI), STAN: req.STAN, RRN: req.RRN}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auths == nil {
		s.auths = map[string]*auth{}
	}
	switch req.MTI {
	case iso.MTIAuthRequest:
		card, ok := s.Cards[req.PAN]
		switch {
		case !ok || card.Expiry != req.Expiry:
			resp.ResponseCode = iso.InvalidCard
		case req.AmountCents > card.AvailableCents:
			resp.ResponseCode = iso.InsufficientFunds
		default:
			if a := s.auths[req.RRN]; a != nil && a.pan == req.PAN && a.amount == req.AmountCents {
				resp.ResponseCode, resp.AuthCode = iso.Approved, a.code // a retried request: same answer, no second hold
				break
			}
			card.AvailableCents -= req.AmountCents
			s.Cards[req.PAN] = card
			resp.ResponseCode, resp.AuthCode = iso.Approved, authCode()
			s.auths[req.RRN] = &auth{pan: req.PAN, amount: req.AmountCents, code: resp.AuthCode}
		}
	case iso.MTIReversal:
		resp.ResponseCode = iso.Approved // also when nothing is held: the reversal is idempotent
		a := s.auths[req.RRN]
		if a == nil || a.captured || a.pan != req.PAN {
			return resp, true
		}
		card := s.Cards[a.pan]
		card.AvailableCents += a.amount
		s.Cards[a.pan] = card
		delete(s.auths, req.RRN)
	case iso.MTIAdviceRequest:
		a := s.auths[req.RRN]
		switch {
		case a == nil || a.code != req.AuthCode || a.pan != req.PAN || req.AmountCents > a.amount:
			resp.ResponseCode = iso.NoOriginal
		case a.captured:
			resp.ResponseCode = iso.Approved // repeated advice: acknowledged, not charged again
			return resp, true
		default:
			a.captured = true
			resp.ResponseCode = iso.Approved
		}
	}
	s.record(Entry{MTI: req.MTI, RRN: req.RRN, STAN: req.STAN, PANLast4: last4(req.PAN), AmountCents: req.AmountCents,
		Currency: req.Currency, ResponseCode: resp.ResponseCode, AuthCode: resp.AuthCode})
	s.Log.Info("answered", "mti", resp.MTI, "rrn", req.RRN, "response_code", resp.ResponseCode, "amount_cents", req.AmountCents)
	return resp, true
}

func (s *Server) record(e Entry) {
	if s.Ledger == "" {
		return
	}
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	f, err := os.OpenFile(s.Ledger, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		s.Log.Error("ledger", "error", err)
		return
	}
	defer f.Close()
	b, _ := json.Marshal(e)
	f.Write(append(b, '\n'))
	f.Sync()
}

// ReadLedger reads a ledger file.
func ReadLedger(path string) ([]Entry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	dec := json.NewDecoder(bytesReader(b))
	for dec.More() {
		var e Entry
		if err := dec.Decode(&e); err != nil {
			return out, fmt.Errorf("ledger %s: %w", path, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func authCode() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1_000_000))
	return fmt.Sprintf("%06d", n.Int64())
}

func last4(pan string) string {
	if len(pan) < 4 {
		return pan
	}
	return pan[len(pan)-4:]
}
