package outside

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzCallFromRequest maps any HTTP request the server could parse to a
// call, or refuses it: a call names a script of two non-empty parts, never
// carries credentials or the httpoxy header in its meta-variables, and its
// user comes only from a TLS certificate (none here).
func FuzzCallFromRequest(f *testing.F) {
	f.Add([]byte("GET /cgi-bin/purchasing/catalogue HTTP/1.1\r\nHost: shop\r\n\r\n"))
	f.Add([]byte("POST /cgi-bin/purchasing/basket/x/y?a=1 HTTP/1.1\r\nHost: shop:8443\r\nContent-Type: application/json\r\nContent-Length: 2\r\nCookie: s=1\r\nProxy: evil\r\nAuthorization: Basic x\r\n\r\n{}"))
	f.Add([]byte("GET /cgi-bin//x HTTP/1.0\r\n\r\n"))
	f.Add([]byte("GET /cgi-bin/a/%2e%2e/b HTTP/1.1\r\nHost: [::1]:1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.RemoteAddr = "192.0.2.1:4711"
		c, err := CallFromRequest(r, body)
		if err != nil {
			return
		}
		comp, script, ok := strings.Cut(c.Script, "/")
		if !ok || comp == "" || script == "" || strings.Contains(script, "/") {
			t.Fatalf("script %q is not <compartment>/<script>", c.Script)
		}
		for k := range c.Meta {
			switch k {
			case "HTTP_PROXY", "HTTP_AUTHORIZATION", "HTTP_COOKIE", "SSL_CLIENT_CERT":
				t.Fatalf("meta-variable %s crossed", k)
			}
		}
		if c.User != "" || c.Method != r.Method || c.Meta["SCRIPT_NAME"] != CGIPrefix+c.Script {
			t.Fatalf("call %+v from %s %s", c, r.Method, r.URL)
		}
	})
}
