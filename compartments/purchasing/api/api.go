// Package api holds the purchasing compartment's wire types: the JSON and
// document formats of its HTTP interface (../API.md) and the text a signed
// request covers (RequestToSign), shared by the compartment, the e2s
// client, the storefront's tests and the e2e tests. It imports nothing from
// the module, so a client links none of the compartment's implementation.
package api

// Type names of the JSON documents.
const (
	TypeOffer     = "e2sgate.offer.v1"
	TypeLogin     = "e2sgate.login.v1"
	TypeSession   = "e2sgate.session.v1"
	TypeStatement = "e2sgate.statement.v1"
)

// Order states.
const (
	StatusStored       = "stored"       // an anonymous order of the first slice
	StatusAccepted     = "accepted"     // contract made, payment authorised
	StatusDelivered    = "delivered"    // goods protected for the buyer, capture asked
	StatusAcknowledged = "acknowledged" // the buyer's signed acknowledgement is stored
)

// Error is the body of every answer that is not 2xx.
type Error struct {
	Error   string `json:"error"` // a code the client can act on, e.g. "not_delivered"
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
}

// Product is one catalogue entry.
type Product struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	Category   string `json:"category"`
	PriceCents int64  `json:"price_cents"` // net
	VATPercent int    `json:"vat_percent"`
}

// Catalogue is the public catalogue (GET catalogue).
type Catalogue struct {
	Currency string    `json:"currency"`
	Products []Product `json:"products"`
}

// PrivateProduct is a catalogue entry as one organisation sees it.
type PrivateProduct struct {
	Product
	ListCents int64 `json:"list_cents"`
	Allowed   bool  `json:"allowed"`
}

// OrgRef names a buyer organisation.
type OrgRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// PrivateCatalogue is the organisation's catalogue (GET private): its
// contract prices and terms and what this buyer may order.
type PrivateCatalogue struct {
	Org      OrgRef           `json:"org"`
	Buyer    MemberView       `json:"buyer"`
	Currency string           `json:"currency"`
	Terms    string           `json:"terms"`
	Products []PrivateProduct `json:"products"`
}

// Item is a basket line as the buyer sends it.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// Basket is what the buyer sends (POST basket, POST offer).
type Basket struct {
	Items []Item `json:"items"`
}

// Line is a priced basket line.
type Line struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	Qty        int    `json:"qty"`
	UnitCents  int64  `json:"unit_cents"`
	NetCents   int64  `json:"net_cents"`
	VATPercent int    `json:"vat_percent"`
	Category   string `json:"category,omitempty"`
}

// VATGroup is the VAT of all lines with one rate.
type VATGroup struct {
	Percent  int   `json:"percent"`
	NetCents int64 `json:"net_cents"`
	VATCents int64 `json:"vat_cents"`
}

// Priced is a priced basket.
type Priced struct {
	Currency   string     `json:"currency"`
	Lines      []Line     `json:"lines"`
	VAT        []VATGroup `json:"vat"`
	NetCents   int64      `json:"net_cents"`
	GrossCents int64      `json:"gross_cents"`
}

// Offer is the document the merchant signs (the content of POST offer's
// SignedData, and so of the acceptance and the contract).
type Offer struct {
	Type       string `json:"type"` // TypeOffer
	OfferID    string `json:"offer_id"`
	Merchant   string `json:"merchant"`
	Issued     string `json:"issued"`
	ValidUntil string `json:"valid_until"`
	Terms      string `json:"terms"`
	Org        string `json:"org,omitempty"`   // the buyer organisation; empty: a quotation only
	Buyer      string `json:"buyer,omitempty"` // the buyer's certificate fingerprint
	BuyerName  string `json:"buyer_name,omitempty"`
	Priced
}

// Card is the purchasing card the buyer pays with; it goes to payment and
// is never stored by purchasing.
type Card struct {
	PAN    string `json:"pan"`
	Expiry string `json:"expiry"` // MM/YY
}

// AcceptRequest is the body of POST accept.
type AcceptRequest struct {
	Acceptance []byte `json:"acceptance"` // the offer with the buyer's signature added, DER (base64 in JSON)
	Card       Card   `json:"card"`
}

// LoginRequest is the buyer's signed login message (POST login).
type LoginRequest struct {
	Type        string `json:"type"` // TypeLogin
	Challenge   string `json:"challenge"`
	Fingerprint string `json:"fingerprint"`
	Time        string `json:"time"`
}

// LoginAnswer is the merchant's answer to POST login.
type LoginAnswer struct {
	Type      string     `json:"type"` // TypeSession
	Session   string     `json:"session"`
	Expires   string     `json:"expires"`
	Buyer     MemberView `json:"buyer"`
	Catalogue string     `json:"catalogue"`
	// MerchantSignature is a CMS SignedData by the merchant whose content
	// is this answer without this field.
	MerchantSignature []byte `json:"merchant_signature,omitempty"`
}

// MemberView is a member of a buyer organisation as answers show it.
type MemberView struct {
	Org         string   `json:"org"`
	Fingerprint string   `json:"fingerprint"`
	Name        string   `json:"name"`
	Role        string   `json:"role"`
	LimitCents  int64    `json:"limit_cents"`
	Categories  []string `json:"categories"`
	Revoked     bool     `json:"revoked,omitempty"`
}

// Authorization is payment's answer to payment/authorize.
type Authorization struct {
	Approved     bool   `json:"approved"`
	AuthCode     string `json:"auth_code,omitempty"`
	ResponseCode string `json:"response_code,omitempty"`
	Reason       string `json:"reason,omitempty"`
	At           string `json:"at,omitempty"`
}

// Delivery is the soft goods as delivered. GET order shows only FileName
// and At; the rest stays with the merchant.
type Delivery struct {
	FileName   string `json:"file_name"`
	Content    []byte `json:"content"`     // the document (kept to check the acknowledgement)
	SignedData []byte `json:"signed_data"` // the merchant's SignedData inside the encryption
	Message    []byte `json:"message"`     // what the buyer downloads (GET delivery/ID)
	At         string `json:"at"`
}

// Capture is payment's answer to payment/capture.
type Capture struct {
	Captured bool   `json:"captured"`
	Detail   string `json:"detail,omitempty"`
	At       string `json:"at"`
}

// Ack is the buyer's verified signed file acknowledgement. GET order shows
// it without DER.
type Ack struct {
	DER      []byte `json:"der"`
	FileName string `json:"file_name"`
	FileSize int64  `json:"file_size"`
	At       string `json:"at"`
}

// Order is an order as the merchant keeps it and, without the delivered
// document, as GET order/ID shows it.
type Order struct {
	OrderID       string         `json:"order_id"`
	Created       string         `json:"created"`
	Status        string         `json:"status"`
	User          string         `json:"user,omitempty"` // the proven identity: "buyer:<fingerprint>" (empty: anonymous)
	Org           string         `json:"org,omitempty"`
	Buyer         string         `json:"buyer,omitempty"`
	BuyerName     string         `json:"buyer_name,omitempty"`
	Terms         string         `json:"terms,omitempty"`
	Contract      []byte         `json:"contract,omitempty"`
	Authorization *Authorization `json:"authorization,omitempty"`
	BackOffice    string         `json:"back_office,omitempty"`
	Delivery      *Delivery      `json:"delivery,omitempty"`
	Capture       *Capture       `json:"capture,omitempty"`
	Ack           *Ack           `json:"acknowledgement,omitempty"`
	Priced
}

// StatementLine is one order on a statement.
type StatementLine struct {
	OrderID         string     `json:"order_id"`
	Created         string     `json:"created"`
	Buyer           string     `json:"buyer"`
	BuyerName       string     `json:"buyer_name"`
	Status          string     `json:"status"`
	NetCents        int64      `json:"net_cents"`
	VAT             []VATGroup `json:"vat"`
	GrossCents      int64      `json:"gross_cents"`
	AuthorizedCents int64      `json:"authorized_cents"`
	AuthCode        string     `json:"auth_code,omitempty"`
	CapturedCents   int64      `json:"captured_cents"`
	Acknowledged    bool       `json:"acknowledged"`
}

// Statement is a buyer organisation's reconciliation (GET statement).
type Statement struct {
	Type            string          `json:"type"` // TypeStatement
	Org             string          `json:"org"`
	OrgName         string          `json:"org_name"`
	Issued          string          `json:"issued"`
	Currency        string          `json:"currency"`
	Orders          []StatementLine `json:"orders"`
	VAT             []VATGroup      `json:"vat"`
	NetCents        int64           `json:"net_cents"`
	GrossCents      int64           `json:"gross_cents"`
	AuthorizedCents int64           `json:"authorized_cents"`
	CapturedCents   int64           `json:"captured_cents"`
}
