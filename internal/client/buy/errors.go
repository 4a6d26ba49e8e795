package buy

import (
	"crypto/x509"
	"errors"
	"net/http"
)

var (
	// ErrRefused means the merchant refused a step (the message says
	// which and why).
	ErrRefused = errors.New("refused by the merchant")
	// ErrBadDocument means a document from the merchant does not check out.
	ErrBadDocument = errors.New("document from the merchant does not check out")
)

// httpError is an answer that is not 2xx: its status and the merchant's
// error code.
type httpError struct {
	status int
	code   string
	msg    string
}

func (h *httpError) Error() string { return h.msg }
func (h *httpError) Unwrap() error { return ErrRefused }

// codeHints say what to do after the merchant's error codes (API.md).
var codeHints = map[string]string{
	"unauthenticated":          "the request was not signed with your key: check the config's credential ('e2s keystore list')",
	"bad_signature":            "the merchant could not verify the request's signature with your registered certificate: check that the config's credential is the certificate your manager registered ('e2s keystore list'), then run the command again",
	"stale_request":            "your clock is more than 5 minutes off the merchant's: set it (NTP) and run the command again",
	"replay_guard_unavailable": "the merchant cannot record signed requests right now and refuses them: try again in a few minutes",
	"unknown_buyer":            "your certificate is not registered with the merchant: give 'e2s cert export' to your organisation's purchasing manager to enrol it",
	"revoked":                  "your membership is revoked: ask your organisation's purchasing manager",
	"replayed":                 "run the command again (each request is signed afresh)",
	"category":                 "your organisation does not let you buy that category: see 'e2s buy -list', or ask your purchasing manager",
	"over_limit":               "the total exceeds your limit: buy less, or ask your purchasing manager to raise the limit",
	"unknown_sku":              "see 'e2s buy -list' for the SKUs you can buy",
	"not_delivered":            "the back office has not confirmed the delivery yet: run the same command later, or add -wait 10m",
	"no_order":                 "check the order id (the offer id 'e2s buy' printed)",
}

// Hint says what to do after an error of this package, or "".
func Hint(err error) string {
	var he *httpError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return "the appliance's TLS certificate is not trusted: pass -cacert FILE with the certificate its operator publishes"
	case errors.As(err, &hn):
		return "the -url host is not the one the appliance's TLS certificate names: use the host name from the certificate"
	case errors.As(err, &he):
		if h, ok := codeHints[he.code]; ok {
			return h
		}
		if he.status == http.StatusServiceUnavailable || he.status == http.StatusBadGateway {
			return "the appliance is busy or a part of it is restarting: try again in a minute"
		}
		return "the merchant refused the step; the message above says why"
	case errors.Is(err, ErrRefused):
		return "see 'e2s buy -list' for what you may buy, or ask your organisation's purchasing manager"
	case errors.Is(err, ErrBadDocument):
		return "do not rely on this document: the merchant's answer failed a check; tell the merchant"
	}
	return ""
}
