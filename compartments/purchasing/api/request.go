package api

import (
	"crypto/sha512"
	"encoding/hex"
	"strings"
)

// The headers of a signed request (API.md "Who you are"). Every request
// that acts for a person carries all four; a session adds E2s-Session.
const (
	HeaderSignature = "E2s-Signature" // base64 detached CMS SignedData (SHA-512) over RequestToSign
	HeaderBuyer     = "E2s-Buyer"     // the signer's certificate fingerprint (hex SHA-256 of the DER)
	HeaderTime      = "E2s-Time"      // RFC 3339, within RequestWindow of the merchant's clock
	HeaderNonce     = "E2s-Nonce"     // 16 to 64 characters [A-Za-z0-9_-], never used twice
	HeaderSession   = "E2s-Session"   // the session of a signed login (optional)
)

// TypeRequest is the first line of RequestToSign.
const TypeRequest = "e2sgate.request.v1"

// PathPrefix is the path of the purchasing scripts at the web front.
const PathPrefix = "/cgi-bin/purchasing/"

// RequestToSign is the exact text a signed request's E2s-Signature covers:
// its type, method, path (as sent, e.g. /cgi-bin/purchasing/order/<id>),
// raw query, the hex SHA-512 of the body, time, nonce and the signer's
// fingerprint, one per line, without a final newline. Outside sees and
// could change every part of a request; it cannot change any of these
// without the signature failing, nor send them twice.
func RequestToSign(method, path, query string, body []byte, time, nonce, fingerprint string) []byte {
	sum := sha512.Sum512(body)
	return []byte(strings.Join([]string{TypeRequest, method, path, query, hex.EncodeToString(sum[:]), time, nonce, fingerprint}, "\n"))
}
