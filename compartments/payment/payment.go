// Package payment is the payment compartment (E2S §6.2.2). Purchasing calls
// it through the gate agent:
//
//	payment/limits     a purchasing manager's control parameters for a buyer
//	                   {org, buyer, limit_cents, categories[]}
//	payment/authorize  {order_id, org, buyer, amount_cents, currency, category,
//	                   card:{pan, expiry}} → {approved, auth_code, response_code, reason}
//	payment/capture    {order_id} → {captured}
//	payment/health
//
// It checks the buyer's control parameters (spending limit, allowed
// categories) before the acquirer is asked, reaches the acquirer only
// through the inside compartment's SOCKS filter with TLS end to end (ISO
// 8583, package iso), and keeps every transaction sealed at rest. Card
// numbers never leave it in full: answers carry the masked PAN only.
package payment

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/e2sgate/e2sgate/compartments/payment/iso"
	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// Config is payment's section, handed to it by the supervisor as JSON.
type Config struct {
	Acquirer     string `json:"acquirer"`      // ip:port on the internal network
	AcquirerCert string `json:"acquirer_cert"` // PEM of the pinned certificate
	Socks        string `json:"socks"`         // the SOCKS filter's unix socket
	TimeoutMS    int64  `json:"timeout_ms"`    // per request to the acquirer; default 10 s
	Merchant     string `json:"merchant"`      // card acceptor id (15)
	Terminal     string `json:"terminal"`      // terminal id (8)
}

// Timeout is the per-request acquirer timeout.
func (c Config) Timeout() time.Duration {
	if c.TimeoutMS <= 0 {
		return 10 * time.Second
	}
	return time.Duration(c.TimeoutMS) * time.Millisecond
}

// Card is what the buyer pays with.
type Card struct {
	PAN    string `json:"pan"`
	Expiry string `json:"expiry"` // MM/YY
}

// AuthRequest is payment/authorize's body.
type AuthRequest struct {
	OrderID     string `json:"order_id"`
	Org         string `json:"org"`
	Buyer       string `json:"buyer"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Category    string `json:"category"`
	Card        Card   `json:"card"`
}

// AuthResult is payment/authorize's answer.
type AuthResult struct {
	OrderID      string `json:"order_id"`
	Approved     bool   `json:"approved"`
	AuthCode     string `json:"auth_code,omitempty"`
	ResponseCode string `json:"response_code,omitempty"`
	Reason       string `json:"reason"`
	Card         string `json:"card,omitempty"` // masked
}

// Limits are a buyer's control parameters.
type Limits struct {
	Org        string   `json:"org"`
	Buyer      string   `json:"buyer"`
	LimitCents int64    `json:"limit_cents"`
	Categories []string `json:"categories"`
	SpentCents int64    `json:"spent_cents"` // authorised so far; set by payment
}

// Transaction states.
const (
	StatePending    = "pending" // asked the acquirer, no answer recorded yet
	StateAuthorized = "authorized"
	StateDeclined   = "declined"
	StateTimeout    = "timeout"
	StateCaptured   = "captured"
	StateReversed   = "reversed" // a timed-out authorisation, reversed at the acquirer (0420)
)

// Tx is one order's payment, kept sealed at rest.
type Tx struct {
	OrderID      string `json:"order_id"`
	Org          string `json:"org"`
	Buyer        string `json:"buyer"`
	AmountCents  int64  `json:"amount_cents"`
	Currency     string `json:"currency"`
	Category     string `json:"category"`
	PAN          string `json:"pan"`
	Expiry       string `json:"expiry"` // YYMM
	STAN         string `json:"stan"`
	RRN          string `json:"rrn"`
	AuthCode     string `json:"auth_code,omitempty"`
	ResponseCode string `json:"response_code,omitempty"`
	State        string `json:"state"`
	Updated      string `json:"updated"`
}

// Handler serves the payment scripts.
type Handler struct {
	log *slog.Logger
	cfg Config
	acq Acquirer
	st  *store
	// Locks by key: an order's payment is decided once at a time, and a
	// buyer's limit is checked and charged together (held across the
	// acquirer's answer); other buyers' payments go on meanwhile.
	locks keyLocks
	now   func() time.Time
}

// New returns the payment handler keeping its state under dataDir. acq may
// be nil: then cfg says how to reach the acquirer (through SOCKS, TLS
// pinned); with no acquirer configured, authorisations fail cleanly.
func New(log *slog.Logger, cfg Config, dataDir string, acq Acquirer) (*Handler, error) {
	return newHandler(log, cfg, dataDir, acq, 0)
}

func newHandler(log *slog.Logger, cfg Config, dataDir string, acq Acquirer, keyBits int) (*Handler, error) {
	st, err := openStore(dataDir, keyBits)
	if err != nil {
		return nil, fmt.Errorf("payment store: %w", err)
	}
	if cfg.Merchant == "" {
		cfg.Merchant = "E2SGATE00000001"
	}
	if cfg.Terminal == "" {
		cfg.Terminal = "E2SWEB01"
	}
	h := &Handler{log: log, cfg: cfg, acq: acq, st: st, now: time.Now}
	if h.acq == nil {
		a, err := newTLSAcquirer(cfg)
		if err != nil && !errors.Is(err, ErrNoAcquirer) {
			return nil, err
		}
		if err == nil {
			h.acq = a
		} else {
			log.Warn("no acquirer configured; authorisations will fail")
		}
	}
	return h, nil
}

// Handle dispatches on the registered handler name.
func (h *Handler) Handle(ctx context.Context, c *callpb.Call) (*callpb.Response, error) {
	switch c.GetScript() {
	case "health":
		return protocol.JSON(200, map[string]any{"compartment": "payment", "status": "ok", "acquirer": h.acq != nil}), nil
	case "authorize":
		return h.authorize(ctx, c), nil
	case "capture":
		return h.capture(ctx, c), nil
	case "limits":
		return h.limits(c), nil
	}
	return protocol.Error(404, "no_handler", "no such handler"), nil
}

func decode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

var (
	idRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	nameRE = regexp.MustCompile(`^[\pL\pN ._@-]{1,128}$`)
	panRE  = regexp.MustCompile(`^[0-9]{13,19}$`)
)

func limitsName(org, buyer string) string { return "limits\x00" + org + "\x00" + buyer }
func txName(orderID string) string        { return "tx\x00" + orderID }

func (h *Handler) limits(c *callpb.Call) *callpb.Response {
	var l Limits
	if err := decode(c.GetBody(), &l); err != nil || !nameRE.MatchString(l.Org) || !nameRE.MatchString(l.Buyer) || l.LimitCents < 0 || len(l.Categories) > 64 {
		return protocol.Error(400, "bad_limits", `limits are {"org","buyer","limit_cents" >= 0,"categories":[...]}`)
	}
	for _, cat := range l.Categories {
		if !nameRE.MatchString(cat) {
			return protocol.Error(400, "bad_limits", "categories are short names")
		}
	}
	defer h.locks.lock(limitsName(l.Org, l.Buyer))()
	var old Limits
	if _, err := h.st.get(limitsName(l.Org, l.Buyer), &old); err != nil {
		h.log.Error("read limits", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(500, "store_failed", "the limits could not be read")
	}
	l.SpentCents = old.SpentCents
	if err := h.st.put(limitsName(l.Org, l.Buyer), l); err != nil {
		h.log.Error("store limits", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(503, "store_failed", "the limits were not stored; try again")
	}
	h.log.Info("limits set", "req_id", c.GetReqId(), "org", l.Org, "buyer", l.Buyer, "limit_cents", l.LimitCents, "user", c.GetUser())
	return protocol.JSON(200, l)
}

// refuse answers an authorisation without the acquirer's approval. A
// decision (approved or not) is 200 with "approved"; other statuses mean
// the payment could not be decided now (timeout, unreachable: retry safe).
func refuse(status int, orderID, reason, pan string) *callpb.Response {
	r := protocol.JSON(status, AuthResult{OrderID: orderID, Approved: false, Reason: reason, Card: Mask(pan)})
	r.Reason = reason
	return r
}

func (h *Handler) authorize(ctx context.Context, c *callpb.Call) *callpb.Response {
	var in AuthRequest
	if err := decode(c.GetBody(), &in); err != nil {
		return protocol.Error(400, "bad_request", "authorize takes {order_id, org, buyer, amount_cents, currency, category, card:{pan, expiry}}")
	}
	num, known := iso.Currencies[in.Currency]
	expiry, expErr := iso.ExpiryYYMM(in.Card.Expiry)
	switch {
	case !idRE.MatchString(in.OrderID):
		return protocol.Error(400, "bad_order_id", "order_id is 1 to 64 letters, digits, - or _")
	case !nameRE.MatchString(in.Org) || !nameRE.MatchString(in.Buyer) || !nameRE.MatchString(in.Category):
		return protocol.Error(400, "bad_request", "org, buyer and category are short names")
	case in.AmountCents <= 0 || in.AmountCents > 999_999_999_999:
		return protocol.Error(400, "bad_amount", "amount_cents must be positive")
	case !known:
		return protocol.Error(400, "bad_currency", "currency is one of EUR, USD, GBP, CHF")
	case !panRE.MatchString(in.Card.PAN) || !Luhn(in.Card.PAN):
		return refuse(200, in.OrderID, "invalid_card_number", in.Card.PAN)
	case expErr != nil:
		return protocol.Error(400, "bad_expiry", "card expiry is MM/YY")
	}

	defer h.locks.lock(limitsName(in.Org, in.Buyer))() // always the buyer first, then the order
	defer h.locks.lock(txName(in.OrderID))()
	var tx Tx
	found, err := h.st.get(txName(in.OrderID), &tx)
	if err != nil {
		h.log.Error("read transaction", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(500, "store_failed", "the payment state could not be read")
	}
	if found && (tx.State == StateAuthorized || tx.State == StateCaptured) {
		// Idempotent: the same order is never authorised (or charged) twice.
		if tx.AmountCents != in.AmountCents || tx.PAN != in.Card.PAN || tx.Currency != in.Currency {
			return refuse(409, in.OrderID, "order_already_authorized", tx.PAN)
		}
		return protocol.JSON(200, AuthResult{OrderID: tx.OrderID, Approved: true, AuthCode: tx.AuthCode, ResponseCode: tx.ResponseCode, Reason: "already_authorized", Card: Mask(tx.PAN)})
	}

	// The buyer's control parameters, before the acquirer is asked.
	var l Limits
	ok, err := h.st.get(limitsName(in.Org, in.Buyer), &l)
	if err != nil {
		h.log.Error("read limits", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(500, "store_failed", "the payment state could not be read")
	}
	switch {
	case !ok:
		return refuse(200, in.OrderID, "no_control_parameters", in.Card.PAN)
	case !slices.Contains(l.Categories, in.Category):
		return refuse(200, in.OrderID, "category_not_allowed", in.Card.PAN)
	case l.SpentCents+in.AmountCents > l.LimitCents:
		return refuse(200, in.OrderID, "over_spending_limit", in.Card.PAN)
	}
	if h.acq == nil {
		return refuse(503, in.OrderID, "acquirer_not_configured", in.Card.PAN)
	}

	tx = Tx{OrderID: in.OrderID, Org: in.Org, Buyer: in.Buyer, AmountCents: in.AmountCents, Currency: in.Currency,
		Category: in.Category, PAN: in.Card.PAN, Expiry: expiry, STAN: stan(), RRN: rrn(in.OrderID), State: StatePending}
	if err := h.save(&tx); err != nil {
		h.log.Error("store transaction", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(503, "store_failed", "the payment was not started; nothing was charged; try again")
	}
	resp, err := h.acq.Exchange(ctx, iso.Request{MTI: iso.MTIAuthRequest, PAN: tx.PAN, Expiry: tx.Expiry, AmountCents: tx.AmountCents,
		Currency: num, STAN: tx.STAN, RRN: tx.RRN, Terminal: h.cfg.Terminal, Merchant: h.cfg.Merchant, Time: h.now()})
	if err != nil {
		reason, status := "acquirer_unreachable", 502
		if errors.Is(err, ErrTimeout) {
			reason, status = "acquirer_timeout", 504
		}
		tx.State = StateTimeout
		if serr := h.save(&tx); serr != nil {
			h.log.Error("store transaction", "req_id", c.GetReqId(), "error", serr)
		}
		// The request may have arrived and been approved with the answer
		// lost: reverse it, once this call has returned (it holds the locks).
		go h.reverse(c.GetReqId(), in.Org, in.Buyer, tx.OrderID)
		h.log.Warn("authorisation failed", "req_id", c.GetReqId(), "order_id", tx.OrderID, "reason", reason, "error", err)
		return refuse(status, tx.OrderID, reason, tx.PAN)
	}
	tx.ResponseCode, tx.AuthCode = resp.ResponseCode, resp.AuthCode
	res := AuthResult{OrderID: tx.OrderID, ResponseCode: resp.ResponseCode, Card: Mask(tx.PAN)}
	if resp.ResponseCode == iso.Approved {
		tx.State, res.Approved, res.AuthCode, res.Reason = StateAuthorized, true, resp.AuthCode, "approved"
		l.SpentCents += tx.AmountCents
		if err := h.st.put(limitsName(l.Org, l.Buyer), l); err != nil {
			h.log.Error("store spent", "req_id", c.GetReqId(), "error", err)
		}
	} else {
		tx.State, res.Reason = StateDeclined, declineReason(resp.ResponseCode)
	}
	if err := h.save(&tx); err != nil {
		h.log.Error("store transaction", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(503, "store_failed", "the payment outcome was not stored; retry with the same order_id")
	}
	h.log.Info("authorisation", "req_id", c.GetReqId(), "order_id", tx.OrderID, "response_code", tx.ResponseCode, "card", Mask(tx.PAN))
	return protocol.JSON(200, res)
}

func (h *Handler) capture(ctx context.Context, c *callpb.Call) *callpb.Response {
	var in struct {
		OrderID string `json:"order_id"`
	}
	if err := decode(c.GetBody(), &in); err != nil || !idRE.MatchString(in.OrderID) {
		return protocol.Error(400, "bad_request", `capture takes {"order_id"}`)
	}
	defer h.locks.lock(txName(in.OrderID))()
	var tx Tx
	found, err := h.st.get(txName(in.OrderID), &tx)
	if err != nil {
		h.log.Error("read transaction", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(500, "store_failed", "the payment state could not be read")
	}
	switch {
	case !found:
		return protocol.Error(404, "no_payment", "no payment for this order")
	case tx.State == StateCaptured:
		return protocol.JSON(200, map[string]any{"order_id": tx.OrderID, "captured": true, "amount_cents": tx.AmountCents, "repeated": true})
	case tx.State != StateAuthorized:
		return protocol.Error(409, "not_authorized", "the payment of this order is not authorised")
	}
	num := iso.Currencies[tx.Currency]
	resp, err := h.acq.Exchange(ctx, iso.Request{MTI: iso.MTIAdviceRequest, PAN: tx.PAN, Expiry: tx.Expiry, AmountCents: tx.AmountCents,
		Currency: num, STAN: tx.STAN, RRN: tx.RRN, AuthCode: tx.AuthCode, Terminal: h.cfg.Terminal, Merchant: h.cfg.Merchant, Time: h.now()})
	if err != nil {
		h.log.Warn("capture failed", "req_id", c.GetReqId(), "order_id", tx.OrderID, "error", err)
		if errors.Is(err, ErrTimeout) {
			return protocol.Error(504, "acquirer_timeout", "the acquirer did not answer; the capture is safe to retry")
		}
		return protocol.Error(502, "acquirer_unreachable", "the acquirer could not be reached; the capture is safe to retry")
	}
	if resp.ResponseCode != iso.Approved {
		return protocol.Error(502, "capture_refused", "the acquirer refused the capture (response code "+resp.ResponseCode+")")
	}
	tx.State = StateCaptured
	if err := h.save(&tx); err != nil {
		h.log.Error("store transaction", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(503, "store_failed", "the capture was not recorded; retry (the acquirer does not charge twice)")
	}
	h.log.Info("captured", "req_id", c.GetReqId(), "order_id", tx.OrderID, "amount_cents", tx.AmountCents)
	return protocol.JSON(200, map[string]any{"order_id": tx.OrderID, "captured": true, "amount_cents": tx.AmountCents})
}

// reverse sends a reversal advice (0420) for an authorisation whose answer
// never came, so that nothing stays held at the acquirer; a retry of the
// order then asks afresh. Best effort: if the reversal fails too, a retry
// carries the same RRN, which the acquirer recognises.
func (h *Handler) reverse(reqID, org, buyer, orderID string) {
	defer h.locks.lock(limitsName(org, buyer))()
	defer h.locks.lock(txName(orderID))()
	var tx Tx
	if found, err := h.st.get(txName(orderID), &tx); err != nil || !found || tx.State != StateTimeout {
		return
	}
	resp, err := h.acq.Exchange(context.Background(), iso.Request{MTI: iso.MTIReversal, PAN: tx.PAN, Expiry: tx.Expiry,
		AmountCents: tx.AmountCents, Currency: iso.Currencies[tx.Currency], STAN: tx.STAN, RRN: tx.RRN,
		Terminal: h.cfg.Terminal, Merchant: h.cfg.Merchant, Time: h.now()})
	if err != nil || resp.ResponseCode != iso.Approved {
		h.log.Warn("reversal failed; a retry carries the same RRN", "req_id", reqID, "order_id", orderID, "error", err, "response_code", resp.ResponseCode)
		return
	}
	tx.State = StateReversed
	if err := h.save(&tx); err != nil {
		h.log.Error("store transaction", "req_id", reqID, "error", err)
		return
	}
	h.log.Info("timed-out authorisation reversed", "req_id", reqID, "order_id", orderID)
}

func (h *Handler) save(tx *Tx) error {
	tx.Updated = h.now().UTC().Format(time.RFC3339Nano)
	return h.st.put(txName(tx.OrderID), tx)
}

func declineReason(code string) string {
	switch code {
	case iso.InsufficientFunds:
		return "over_card_limit"
	case iso.InvalidCard:
		return "unknown_card"
	}
	return "declined"
}

// Mask keeps a card number's last four digits.
func Mask(pan string) string {
	if len(pan) <= 4 {
		return pan
	}
	b := bytes.Repeat([]byte{'*'}, len(pan)-4)
	return string(append(b, pan[len(pan)-4:]...))
}

// Luhn reports whether a digit string passes the Luhn check.
func Luhn(pan string) bool {
	sum := 0
	for i := range len(pan) {
		n := int(pan[len(pan)-1-i] - '0')
		if i%2 == 1 {
			if n *= 2; n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return sum%10 == 0
}

func stan() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1_000_000))
	return fmt.Sprintf("%06d", n.Int64())
}

// rrn is the retrieval reference: the order id's first 12 characters,
// padded, so that a retried authorisation of the same order is recognised
// by the acquirer.
func rrn(orderID string) string {
	return fmt.Sprintf("%-12.12s", orderID)
}

// keyLocks is a mutex per key, kept only while in use.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

// lock locks key and returns its unlock.
func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
