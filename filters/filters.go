// Package filters holds the request and response filters the gate agent runs
// on a call after the policy allowed it: the standard ones every registration
// gets (method, content type, body size) and the named ones a registration or
// a policy obligation adds (json, pan_mask).
package filters

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"regexp"
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

// Card numbers: 13 to 19 digits, optionally grouped by spaces or dashes.
var panPattern = regexp.MustCompile(`\b\d(?:[ -]?\d){12,18}\b`)

// PANMask replaces every Luhn-valid card number in the body by its last
// four digits, so full card numbers never leave for the outside.
func PANMask(r *callpb.Response) bool {
	hit := false
	r.Body = panPattern.ReplaceAllFunc(r.GetBody(), func(m []byte) []byte {
		digits := make([]byte, 0, len(m))
		for _, b := range m {
			if b >= '0' && b <= '9' {
				digits = append(digits, b)
			}
		}
		// The match may run on into an expiry or a CVV ("4111…1111 12"):
		// mask the longest Luhn-valid card number it starts with.
		for n := min(len(digits), 19); n >= 13; n-- {
			if luhn(digits[:n]) {
				hit = true
				return append(maskDigits(m, n), m[prefixLen(m, n):]...)
			}
		}
		return m
	})
	return hit
}

// prefixLen is the length of the shortest prefix of m holding n digits.
func prefixLen(m []byte, n int) int {
	for i, b := range m {
		if b >= '0' && b <= '9' {
			if n--; n == 0 {
				return i + 1
			}
		}
	}
	return len(m)
}

// maskDigits returns the first n digits of m as stars and their last four.
func maskDigits(m []byte, n int) []byte {
	var d []byte
	for _, b := range m {
		if b >= '0' && b <= '9' && len(d) < n {
			d = append(d, b)
		}
	}
	return append(bytes.Repeat([]byte{'*'}, n-4), d[n-4:]...)
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
