// Package filters holds the request and response filters the gate agent runs
// on a call after the policy allowed it: the standard ones every registration
// gets (method, content type, body size) and the named ones a registration or
// a policy obligation adds (json, pan_mask; pan_mask masks the body and the
// header values).
package filters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"slices"
	"sort"
	"strings"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// Denial is a filter's refusal: the HTTP status for the client and the
// reason id for the operator.
type Denial struct {
	Status int
	Reason string
	Msg    string
}

func (d *Denial) Error() string { return d.Reason + ": " + d.Msg }

// Request checks a call on its way to the target; a non-nil *Denial refuses it.
type Request func(c *callpb.Call) *Denial

// Response rewrites an answer on its way back; it reports whether it changed
// anything (a "hit", audited).
type Response func(r *callpb.Response) (hit bool)

// Method allows only the listed HTTP methods.
func Method(allowed []string) Request {
	return func(c *callpb.Call) *Denial {
		if !slices.Contains(allowed, c.GetMethod()) {
			return &Denial{405, "flt.method", fmt.Sprintf("method %s not allowed; use %s", c.GetMethod(), strings.Join(allowed, ", "))}
		}
		return nil
	}
}

// ContentType allows a body only with one of the listed media types
// (parameters such as charset are ignored). A call without a body passes.
func ContentType(allowed []string) Request {
	return func(c *callpb.Call) *Denial {
		if len(c.GetBody()) == 0 {
			return nil
		}
		mt, _, err := mime.ParseMediaType(c.GetMeta()["CONTENT_TYPE"])
		if err != nil || !slices.Contains(allowed, mt) {
			return &Denial{415, "flt.content_type", fmt.Sprintf("content type %q not accepted; send one of %s", c.GetMeta()["CONTENT_TYPE"], strings.Join(allowed, ", "))}
		}
		return nil
	}
}

// BodySize refuses bodies larger than max bytes.
func BodySize(max int64) Request {
	return func(c *callpb.Call) *Denial {
		if int64(len(c.GetBody())) > max {
			return &Denial{413, "flt.body_size", fmt.Sprintf("body of %d bytes exceeds the limit of %d", len(c.GetBody()), max)}
		}
		return nil
	}
}

// JSON refuses a body that is not one well-formed JSON value.
func JSON(c *callpb.Call) *Denial {
	if len(c.GetBody()) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(c.GetBody()))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil || dec.More() {
		return &Denial{400, "flt.json", "body is not a single well-formed JSON value"}
	}
	return nil
}

// PANMask replaces every Luhn-valid card number in the body and in the
// header values by its last four digits, so full card numbers never leave
// for the outside (a redirect's Location is as much an answer as its body).
func PANMask(r *callpb.Response) bool {
	hit := false
	if !opaque(r.GetHeaders()["Content-Type"]) {
		if b, ok := maskPANs(r.GetBody()); ok {
			r.Body, hit = b, true
		}
	}
	for k, v := range r.GetHeaders() {
		if b, ok := maskPANs([]byte(v)); ok {
			r.Headers[k], hit = string(b), true
		}
	}
	return hit
}

// opaque reports whether a body of this content type is a signed or
// enveloped CMS document: changing a byte of it would break its signature
// (or it is encrypted and shows no card number anyway), so its body is left
// whole; its headers are still masked.
func opaque(contentType string) bool {
	ct := strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]))
	return strings.HasPrefix(ct, "application/pkcs7-") || strings.HasPrefix(ct, "application/x-pkcs7-")
}

// A card number is 13 to 19 digits, grouped or not by a separator: a
// space, two spaces, a dash or a dot. Letters and underscores may touch it
// ("ref_4111…", "pan4111…"): only a further digit makes it part of a longer
// number.
const (
	minPAN = 13
	maxPAN = 19
)

// sepLen is the length of the separator at b[i:] (0: none).
func sepLen(b []byte, i int) int {
	switch {
	case i+1 < len(b) && b[i] == ' ' && b[i+1] == ' ':
		return 2
	case i < len(b) && (b[i] == ' ' || b[i] == '-' || b[i] == '.'):
		return 1
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// inHex reports whether the digits b[start:end] sit inside a hex string (an
// id, a fingerprint, a nonce): a hex letter touches them on either side.
// Such digits are not a card number, and masking them would change ids
// and break signatures over them.
func inHex(b []byte, start, end int) bool {
	hexLetter := func(i int) bool {
		return i >= 0 && i < len(b) && ((b[i] >= 'a' && b[i] <= 'f') || (b[i] >= 'A' && b[i] <= 'F'))
	}
	return hexLetter(start-1) || hexLetter(end)
}

// maskPANs returns b with every card number masked, and whether it masked
// one (b itself is not changed).
func maskPANs(b []byte) ([]byte, bool) {
	var out []byte // nil until the first hit
	last := 0      // b[:last] is already in out
	for i := 0; i < len(b); {
		if !isDigit(b[i]) || (i > 0 && isDigit(b[i-1])) {
			i++
			continue
		}
		// i starts a group of digits. A group longer than a card number
		// is some other number: skip it whole.
		g := i
		for g < len(b) && isDigit(b[g]) {
			g++
		}
		if g-i > maxPAN {
			i = g
			continue
		}
		// The positions of up to maxPAN digits from here, across separators.
		var pos []int
		for j := i; j < len(b) && len(pos) < maxPAN; {
			if isDigit(b[j]) {
				pos = append(pos, j)
				j++
				continue
			}
			n := sepLen(b, j)
			if n == 0 || j+n >= len(b) || !isDigit(b[j+n]) {
				break
			}
			j += n
		}
		// The run may go on into an expiry or a CVV ("4111…1111 123"):
		// mask the longest Luhn-valid card number it starts with.
		n := 0
		if len(pos) >= minPAN {
			digits := make([]byte, len(pos))
			for k, p := range pos {
				digits[k] = b[p]
			}
			for n = len(pos); n >= minPAN && !luhn(digits[:n]); n-- {
			}
		}
		if n < minPAN || inHex(b, i, pos[max(n, 1)-1]+1) {
			i = g // not a card number from this group: try the next one
			continue
		}
		end := pos[n-1] + 1
		out = append(out, b[last:i]...)
		out = append(out, bytes.Repeat([]byte{'*'}, n-4)...)
		for _, p := range pos[n-4 : n] {
			out = append(out, b[p])
		}
		last, i = end, end
	}
	if out == nil {
		return b, false
	}
	return append(out, b[last:]...), true
}

func luhn(d []byte) bool {
	sum := 0
	for i := range d {
		n := int(d[len(d)-1-i] - '0')
		if i%2 == 1 {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return sum%10 == 0
}

var (
	requests  = map[string]Request{"json": JSON}
	responses = map[string]Response{"pan_mask": PANMask}
)

// LookupRequest returns the named request filter.
func LookupRequest(name string) (Request, bool) { f, ok := requests[name]; return f, ok }

// LookupResponse returns the named response filter.
func LookupResponse(name string) (Response, bool) { f, ok := responses[name]; return f, ok }

// Names lists the named filters, for error messages.
func Names() []string {
	var n []string
	for k := range requests {
		n = append(n, k)
	}
	for k := range responses {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
