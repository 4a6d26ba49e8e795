package purchasing

import "github.com/e2sgate/e2sgate/compartments/purchasing/api"

// The wire types are declared once, in package api, which the e2s client
// and the tests share; these aliases keep this package's code short.
type (
	Product          = api.Product
	Catalogue        = api.Catalogue
	PrivateProduct   = api.PrivateProduct
	PrivateCatalogue = api.PrivateCatalogue
	Item             = api.Item
	Basket           = api.Basket
	Line             = api.Line
	VATGroup         = api.VATGroup
	Priced           = api.Priced
	Offer            = api.Offer
	Card             = api.Card
	AcceptRequest    = api.AcceptRequest
	LoginRequest     = api.LoginRequest
	LoginAnswer      = api.LoginAnswer
	MemberView       = api.MemberView
	Authorization    = api.Authorization
	Delivery         = api.Delivery
	Capture          = api.Capture
	Ack              = api.Ack
	Order            = api.Order
	StatementLine    = api.StatementLine
	Statement        = api.Statement
)

// Order states.
const (
	StatusStored       = api.StatusStored
	StatusAccepted     = api.StatusAccepted
	StatusDelivered    = api.StatusDelivered
	StatusAcknowledged = api.StatusAcknowledged
)
