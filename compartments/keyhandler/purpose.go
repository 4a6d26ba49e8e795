package keyhandler

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
)

// The key handler signs nothing but the documents of a registered purpose.
// Each purpose is one script in the call registry (policies/registry.yaml:
// keyhandler/<handler>), which names the callers that may ask for it, so
// the gate agent decides and audits who asks; here each purpose's handler
// checks what is asked: the document's type, its schema (unknown fields
// refused) and the fields that must agree with this merchant. A document
// that fails is refused with a reason id (policies/reasons.yaml), logged
// and reported as an audit event with its purpose; no signature leaves.
//
// The key handler holds no buyer or order records (purchasing does), so it
// cannot tell whether an offer's buyer is registered; it checks what a
// document says about itself and about this merchant.

// Purpose is one kind of document the merchant key signs.
type Purpose struct {
	Name    string // in audit events and logs: offer, session, statement, contract, delivery
	Handler string // the key handler's handler, registered as keyhandler/<Handler>
	Doc     string // what the document is
}

// Purposes are every signing purpose, in the order of the purchase.
var Purposes = []Purpose{
	{"offer", "sign-offer", "an offer (" + api.TypeOffer + ") priced by purchasing, in this merchant's name"},
	{"session", "sign-session", "a login answer (" + api.TypeSession + ") naming the buyer's session"},
	{"contract", "countersign", "an offer this merchant signed, accepted by the buyer it names: countersigned into the contract"},
	{"delivery", "protect", "a delivery document for an order, signed and encrypted for the buyer's certificate"},
	{"statement", "sign-statement", "an organisation's statement (" + api.TypeStatement + ") whose totals add up"},
}

// Reason ids of refused signing requests (policies/reasons.yaml); the
// manifest declares them as the "sign" event's reasons.
const (
	ReasonNotJSON      = "keyhandler.not_a_document"
	ReasonWrongPurpose = "keyhandler.wrong_purpose"
	ReasonMalformed    = "keyhandler.malformed"
	ReasonMerchant     = "keyhandler.wrong_merchant"
	ReasonAmounts      = "keyhandler.amounts"
	ReasonTime         = "keyhandler.time"
	ReasonAcceptance   = "keyhandler.not_an_acceptance"
	ReasonBuyer        = "keyhandler.wrong_buyer"
	ReasonRecipient    = "keyhandler.bad_recipient"
)

// Reasons are the reason ids above, for the manifest and tests.
var Reasons = []string{ReasonNotJSON, ReasonWrongPurpose, ReasonMalformed, ReasonMerchant, ReasonAmounts,
	ReasonTime, ReasonAcceptance, ReasonBuyer, ReasonRecipient}

// refusal is a document check's verdict: a reason id and what the caller
// should fix (no inner error text).
type refusal struct {
	reason, msg string
}

func (r *refusal) Error() string { return r.reason + ": " + r.msg }

func refuse(reason, format string, args ...any) *refusal {
	return &refusal{reason, fmt.Sprintf(format, args...)}
}

// Limits of what the key handler signs.
const (
	clockSkew     = 10 * time.Minute    // issued/expires against the key handler's clock
	maxOfferLife  = 31 * 24 * time.Hour // valid_until - issued
	maxSession    = 2 * time.Hour       // expires - now of a login answer
	maxLines      = 100                 // lines of an offer
	maxQty        = 10000               // units of one line
	maxCents      = 1 << 50             // any amount, so sums cannot overflow
	maxStatements = 100000              // orders on one statement
)

var (
	hexID   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hexFP   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	token   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	orgID   = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	curr    = regexp.MustCompile(`^[A-Z]{3}$`)
	skuRE   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	printRE = regexp.MustCompile(`^[^\x00-\x1f\x7f]*$`)
)

// decode reads exactly one JSON document of type want into v, unknown
// fields refused.
func decode(b []byte, want string, v any) *refusal {
	var head struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(b, &head) != nil {
		return refuse(ReasonNotJSON, "the document is not a JSON object with a type")
	}
	if head.Type != want {
		return refuse(ReasonWrongPurpose, "this purpose signs %s documents, not %q", want, clip(head.Type))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return refuse(ReasonMalformed, "the %s document does not match its schema", want)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return refuse(ReasonMalformed, "the %s document has data after it", want)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.ToValidUTF8(s, "?")
}

func parseTime(field, s string) (time.Time, *refusal) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, refuse(ReasonMalformed, "%s is not an RFC 3339 time", field)
	}
	return t, nil
}

// near refuses a time more than clockSkew from now.
func near(field string, t, now time.Time) *refusal {
	if t.Before(now.Add(-clockSkew)) || t.After(now.Add(clockSkew)) {
		return refuse(ReasonTime, "%s is more than %s from the key handler's clock", field, clockSkew)
	}
	return nil
}

// checkPriced checks that a priced basket adds up: each line's net is unit
// × qty, the VAT groups hold exactly the lines' nets per rate with VAT
// rounded half up, and net and gross are their sums.
func checkPriced(p *api.Priced) *refusal {
	if !curr.MatchString(p.Currency) {
		return refuse(ReasonMalformed, "currency must be three capital letters")
	}
	if len(p.Lines) == 0 || len(p.Lines) > maxLines {
		return refuse(ReasonAmounts, "an offer has 1 to %d lines", maxLines)
	}
	perRate := map[int]int64{}
	var net int64
	for i, l := range p.Lines {
		if !skuRE.MatchString(l.SKU) || l.Name == "" || len(l.Name) > 200 || !printRE.MatchString(l.Name) || len(l.Category) > 64 || !printRE.MatchString(l.Category) {
			return refuse(ReasonMalformed, "line %d: sku, name or category is malformed", i+1)
		}
		if l.Qty < 1 || l.Qty > maxQty || l.UnitCents < 0 || l.UnitCents > maxCents || l.VATPercent < 0 || l.VATPercent > 100 {
			return refuse(ReasonAmounts, "line %d: qty 1..%d, unit_cents and vat_percent 0..100 required", i+1, maxQty)
		}
		if l.NetCents != l.UnitCents*int64(l.Qty) {
			return refuse(ReasonAmounts, "line %d: net_cents is not unit_cents × qty", i+1)
		}
		perRate[l.VATPercent] += l.NetCents
		net += l.NetCents
	}
	if err := checkVAT(p.VAT, perRate); err != nil {
		return err
	}
	var vat int64
	for _, g := range p.VAT {
		vat += g.VATCents
	}
	if p.NetCents != net || p.GrossCents != net+vat {
		return refuse(ReasonAmounts, "net_cents or gross_cents is not the sum of the lines and their VAT")
	}
	return nil
}

// checkVAT checks that groups hold exactly the nets per rate, each rate
// once, with VAT rounded half up.
func checkVAT(groups []api.VATGroup, perRate map[int]int64) *refusal {
	if len(groups) != len(perRate) {
		return refuse(ReasonAmounts, "the VAT groups are not one per rate of the lines")
	}
	seen := map[int]bool{}
	for _, g := range groups {
		n, ok := perRate[g.Percent]
		if !ok || seen[g.Percent] || g.NetCents != n || g.VATCents != (n*int64(g.Percent)+50)/100 {
			return refuse(ReasonAmounts, "the VAT group of %d%% does not match the lines", g.Percent)
		}
		seen[g.Percent] = true
	}
	return nil
}

// checkOffer checks an offer document: in this merchant's name, issued
// now, valid for a bounded time, amounts that add up, and for a buyer (not
// a quotation) a well-formed organisation and certificate fingerprint.
func (h *Handler) checkOffer(b []byte, now time.Time) (*api.Offer, *refusal) {
	var o api.Offer
	if r := decode(b, api.TypeOffer, &o); r != nil {
		return nil, r
	}
	if r := h.offerFields(&o); r != nil {
		return nil, r
	}
	issued, r := parseTime("issued", o.Issued)
	if r != nil {
		return nil, r
	}
	if r := near("issued", issued, now); r != nil {
		return nil, r
	}
	return &o, nil
}

// offerFields is what an offer must say whenever it is signed: at the
// offer, and again when its acceptance is countersigned.
func (h *Handler) offerFields(o *api.Offer) *refusal {
	if o.Merchant != h.merchant() {
		return refuse(ReasonMerchant, "the offer names merchant %q; this key signs for %q", clip(o.Merchant), h.merchant())
	}
	if !hexID.MatchString(o.OfferID) {
		return refuse(ReasonMalformed, "offer_id must be 32 hex digits")
	}
	issued, r := parseTime("issued", o.Issued)
	if r != nil {
		return r
	}
	until, r := parseTime("valid_until", o.ValidUntil)
	if r != nil {
		return r
	}
	if !until.After(issued) || until.Sub(issued) > maxOfferLife {
		return refuse(ReasonTime, "valid_until must be after issued, by at most %s", maxOfferLife)
	}
	if len(o.Terms) > 4096 || len(o.BuyerName) > 200 || !printRE.MatchString(o.BuyerName) {
		return refuse(ReasonMalformed, "terms or buyer_name is too long or malformed")
	}
	if (o.Org == "") != (o.Buyer == "") || (o.Org != "" && (!orgID.MatchString(o.Org) || !hexFP.MatchString(o.Buyer))) {
		return refuse(ReasonMalformed, "org and buyer are both empty (a quotation) or an organisation id and a certificate fingerprint")
	}
	return checkPriced(&o.Priced)
}

// checkSession checks a login answer: a session id, an expiry within the
// session's lifetime, a member of an organisation, no signature inside.
func checkSession(b []byte, now time.Time) *refusal {
	var s api.LoginAnswer
	if r := decode(b, api.TypeSession, &s); r != nil {
		return r
	}
	if !token.MatchString(s.Session) || len(s.MerchantSignature) != 0 || s.Catalogue != "/cgi-bin/purchasing/private" {
		return refuse(ReasonMalformed, "a login answer has a 64-hex session, the private catalogue and no signature inside")
	}
	exp, r := parseTime("expires", s.Expires)
	if r != nil {
		return r
	}
	if !exp.After(now.Add(-clockSkew)) || exp.After(now.Add(maxSession)) {
		return refuse(ReasonTime, "expires must lie within %s from now", maxSession)
	}
	if !orgID.MatchString(s.Buyer.Org) || !hexFP.MatchString(s.Buyer.Fingerprint) || s.Buyer.Revoked {
		return refuse(ReasonBuyer, "the answer must name a member (organisation and certificate fingerprint) who is not revoked")
	}
	return nil
}

// checkStatement checks an organisation's statement: issued now, every
// order id well-formed and once, its totals the sums of its lines.
func checkStatement(b []byte, now time.Time) *refusal {
	var s api.Statement
	if r := decode(b, api.TypeStatement, &s); r != nil {
		return r
	}
	if !orgID.MatchString(s.Org) || !curr.MatchString(s.Currency) || len(s.OrgName) > 200 || !printRE.MatchString(s.OrgName) {
		return refuse(ReasonMalformed, "org, org_name or currency is malformed")
	}
	issued, r := parseTime("issued", s.Issued)
	if r != nil {
		return r
	}
	if r := near("issued", issued, now); r != nil {
		return r
	}
	if len(s.Orders) > maxStatements {
		return refuse(ReasonAmounts, "a statement holds at most %d orders", maxStatements)
	}
	seen := map[string]bool{}
	perRate, perRateVAT := map[int]int64{}, map[int]int64{}
	var net, gross, auth, capt int64
	for i, l := range s.Orders {
		if !hexID.MatchString(l.OrderID) || seen[l.OrderID] || (l.Buyer != "" && !hexFP.MatchString(l.Buyer)) {
			return refuse(ReasonMalformed, "order %d: order_id or buyer is malformed or repeated", i+1)
		}
		seen[l.OrderID] = true
		if l.NetCents < 0 || l.NetCents > maxCents || l.GrossCents < l.NetCents || l.GrossCents > maxCents ||
			(l.AuthorizedCents != 0 && l.AuthorizedCents != l.GrossCents) || (l.CapturedCents != 0 && l.CapturedCents != l.GrossCents) {
			return refuse(ReasonAmounts, "order %d: net ≤ gross, authorised and captured 0 or the gross", i+1)
		}
		var vat int64
		for _, g := range l.VAT {
			if g.Percent < 0 || g.Percent > 100 || g.NetCents < 0 || g.NetCents > maxCents || g.VATCents < 0 || g.VATCents > maxCents {
				return refuse(ReasonAmounts, "order %d: a VAT group is out of range", i+1)
			}
			perRate[g.Percent] += g.NetCents
			perRateVAT[g.Percent] += g.VATCents
			vat += g.VATCents
		}
		if l.GrossCents != l.NetCents+vat {
			return refuse(ReasonAmounts, "order %d: gross_cents is not net_cents plus its VAT", i+1)
		}
		net, gross, auth, capt = net+l.NetCents, gross+l.GrossCents, auth+l.AuthorizedCents, capt+l.CapturedCents
	}
	vatNet := map[int]api.VATGroup{}
	for _, g := range s.VAT {
		if _, dup := vatNet[g.Percent]; dup {
			return refuse(ReasonAmounts, "the VAT group of %d%% appears twice", g.Percent)
		}
		vatNet[g.Percent] = g
	}
	if len(vatNet) != len(perRate) {
		return refuse(ReasonAmounts, "the statement's VAT groups are not one per rate of its orders")
	}
	for p, n := range perRate {
		if g := vatNet[p]; g.NetCents != n || g.VATCents != perRateVAT[p] {
			return refuse(ReasonAmounts, "the statement's VAT group of %d%% is not the sum of its orders'", p)
		}
	}
	if s.NetCents != net || s.GrossCents != gross || s.AuthorizedCents != auth || s.CapturedCents != capt {
		return refuse(ReasonAmounts, "the statement's totals are not the sums of its orders")
	}
	return nil
}

// deliveryHead is how purchasing's delivery document begins: the order
// and the SHA-256 of its contract.
var deliveryHead = regexp.MustCompile(`^e2sgate delivery\norder: [0-9a-f]{32}\nlicensee: [^\n]*\ncontract: SHA-256 [0-9a-f]{64}\n\n`)

// checkDelivery checks a delivery: a delivery document, for an end-entity
// certificate that is not this merchant's own.
func (h *Handler) checkDelivery(content []byte, rcpt *x509.Certificate) *refusal {
	if !deliveryHead.Match(content) {
		return refuse(ReasonWrongPurpose, "a delivery begins \"e2sgate delivery\", the order id and the contract's SHA-256")
	}
	if rcpt.IsCA || h.ownCertificate(rcpt) {
		return refuse(ReasonRecipient, "a delivery is for the buyer's own certificate, not a CA's or this merchant's")
	}
	return nil
}
