package filters

import (
	"bytes"
	"maps"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

func call(method, ctype, body string) *callpb.Call {
	return &callpb.Call{Method: method, Meta: map[string]string{"CONTENT_TYPE": ctype}, Body: []byte(body)}
}

func TestRequestFilters(t *testing.T) {
	tests := []struct {
		name       string
		f          Request
		c          *callpb.Call
		wantStatus int // 0: passes
		wantReason string
	}{
		{"method allowed", Method([]string{"GET", "POST"}), call("POST", "", ""), 0, ""},
		{"method refused", Method([]string{"GET"}), call("DELETE", "", ""), 405, "flt.method"},
		{"ctype allowed with charset", ContentType([]string{"application/json"}), call("POST", "application/json; charset=utf-8", "{}"), 0, ""},
		{"ctype refused", ContentType([]string{"application/json"}), call("POST", "text/html", "<p>"), 415, "flt.content_type"},
		{"ctype missing with body", ContentType([]string{"application/json"}), call("POST", "", "{}"), 415, "flt.content_type"},
		{"ctype no body passes", ContentType([]string{"application/json"}), call("GET", "", ""), 0, ""},
		{"body at limit", BodySize(4), call("POST", "", "abcd"), 0, ""},
		{"body over limit", BodySize(4), call("POST", "", "abcde"), 413, "flt.body_size"},
		{"json ok", JSON, call("POST", "", `{"a":[1,2]}`), 0, ""},
		{"json truncated", JSON, call("POST", "", `{"a":[1,2`), 400, "flt.json"},
		{"json two values", JSON, call("POST", "", `{} {}`), 400, "flt.json"},
		{"json empty passes", JSON, call("GET", "", ""), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.f(tt.c)
			if tt.wantStatus == 0 {
				if d != nil {
					t.Fatalf("refused: %v", d)
				}
				return
			}
			if d == nil || d.Status != tt.wantStatus || d.Reason != tt.wantReason {
				t.Fatalf("got %+v, want %d %s", d, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

func TestPANMask(t *testing.T) {
	tests := []struct {
		in, want string
		hit      bool
	}{
		{`{"card":"4111111111111111"}`, `{"card":"************1111"}`, true},
		{`card 4111 1111 1111 1111 ok`, `card ************1111 ok`, true},
		{`card 5500-0000-0000-0004`, `card ************0004`, true},
		{`order 1234567890123 (not luhn)`, `order 1234567890123 (not luhn)`, false},
		{`total 12.50 EUR`, `total 12.50 EUR`, false},
		{`card 4111111111111111 12/30`, `card ************1111 12/30`, true}, // followed by its expiry
		{`card 4111 1111 1111 1111 123`, `card ************1111 123`, true},  // followed by a CVV
		// Gaps an audit found: a word character before the number, dots
		// and double spaces as separators.
		{`ref_4111111111111111`, `ref_************1111`, true},
		{`pan4111111111111111x`, `pan************1111x`, true},
		// Digits inside a hex id or fingerprint are not a card number.
		{`"offer_id":"ab4111111111111111cd"`, `"offer_id":"ab4111111111111111cd"`, false},
		{`"fp":"4111111111111111e9"`, `"fp":"4111111111111111e9"`, false},
		{`card 4111.1111.1111.1111.`, `card ************1111.`, true},
		{`card 4111  1111  1111  1111`, `card ************1111`, true},
		{`card 4111 - 1111`, `card 4111 - 1111`, false}, // " - " is no separator
		{`two 4111111111111111,5500000000000004`, `two ************1111,************0004`, true},
		{`id 41111111111111111111111`, `id 41111111111111111111111`, false}, // one 23-digit number
		{`id 1.4111111111111111`, `id 1.************1111`, true},            // from the next group on
		{`no digits here`, `no digits here`, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r := &callpb.Response{Body: []byte(tt.in)}
			hit := PANMask(r)
			if string(r.Body) != tt.want || hit != tt.hit {
				t.Fatalf("got %q hit=%v, want %q hit=%v", r.Body, hit, tt.want, tt.hit)
			}
		})
	}
}

// Headers are an answer too: a redirect must not carry a card number out.
func TestPANMaskHeaders(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		want    map[string]string
		hit     bool
	}{
		{"location", map[string]string{"Location": "/x?pan=4111111111111111", "Content-Type": "text/plain"},
			map[string]string{"Location": "/x?pan=************1111", "Content-Type": "text/plain"}, true},
		{"custom header", map[string]string{"X-Card": "4111 1111 1111 1111"},
			map[string]string{"X-Card": "************1111"}, true},
		{"nothing to mask", map[string]string{"Location": "/orders/1234"},
			map[string]string{"Location": "/orders/1234"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &callpb.Response{Headers: tt.headers, Body: []byte("ok")}
			hit := PANMask(r)
			if !maps.Equal(r.Headers, tt.want) || hit != tt.hit || string(r.Body) != "ok" {
				t.Fatalf("got %v hit=%v, want %v hit=%v", r.Headers, hit, tt.want, tt.hit)
			}
		})
	}
}

// TestPANMaskLeavesCMSWhole: a signed or enveloped document's body is never
// changed (a masked byte would break its signature); its headers still are.
func TestPANMaskLeavesCMSWhole(t *testing.T) {
	body := []byte("\x30\x80 content 4111 1111 1111 1111 signed")
	r := &callpb.Response{Status: 200, Body: append([]byte(nil), body...),
		Headers: map[string]string{"Content-Type": "application/pkcs7-mime; smime-type=signed-data", "Location": "/x?pan=4111111111111111"}}
	if !PANMask(r) {
		t.Fatal("the header's card number was not masked")
	}
	if !bytes.Equal(r.Body, body) {
		t.Fatalf("CMS body changed: %q", r.Body)
	}
	if r.Headers["Location"] != "/x?pan=************1111" {
		t.Fatalf("Location = %q", r.Headers["Location"])
	}
}
