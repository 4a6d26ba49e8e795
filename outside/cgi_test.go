package outside

import (
	"crypto/tls"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

func TestCallFromRequest(t *testing.T) {
	r := httptest.NewRequest("POST", "https://shop.example:8443/cgi-bin/purchasing/order/abc/def?x=1&y=2", strings.NewReader("{}"))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept-Language", "de")
	r.Header.Set("Proxy", "http://evil")
	r.Header.Set("Authorization", "Basic secret")
	r.RemoteAddr = "192.0.2.7:51000"
	r.TLS = &tls.ConnectionState{}
	c, err := CallFromRequest(r, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "POST", "SCRIPT_NAME": "/cgi-bin/purchasing/order",
		"PATH_INFO": "/abc/def", "QUERY_STRING": "x=1&y=2", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "2",
		"REMOTE_ADDR": "192.0.2.7", "REMOTE_PORT": "51000", "SERVER_NAME": "shop.example", "SERVER_PORT": "8443",
		"HTTP_ACCEPT_LANGUAGE": "de", "HTTPS": "on", "SSL_CLIENT_VERIFY": "NONE",
	}
	for k, v := range want {
		if c.Meta[k] != v {
			t.Errorf("%s = %q, want %q", k, c.Meta[k], v)
		}
	}
	for _, k := range []string{"HTTP_PROXY", "HTTP_AUTHORIZATION", "HTTP_CONTENT_TYPE"} {
		if _, ok := c.Meta[k]; ok {
			t.Errorf("%s must not be passed", k)
		}
	}
	if c.Script != "purchasing/order" || c.PathInfo != "/abc/def" || c.Method != "POST" || c.Query != "x=1&y=2" || string(c.Body) != "{}" {
		t.Fatalf("call %+v", c)
	}
	if c.Caller != "" {
		t.Fatal("the web front must not claim a caller")
	}
}

func TestNotCGI(t *testing.T) {
	for _, p := range []string{"/index.html", "/cgi-bin/", "/cgi-bin/purchasing", "/cgi-bin//x", "/cgi-bin/purchasing/"} {
		if _, err := CallFromRequest(httptest.NewRequest("GET", p, nil), nil); !errors.Is(err, ErrNotCGI) {
			t.Errorf("%s: err = %v", p, err)
		}
	}
}

func TestWriteResponseOnlyAllowedHeaders(t *testing.T) {
	w := httptest.NewRecorder()
	WriteResponse(w, &callpb.Response{Status: 201, Body: []byte("x"), Headers: map[string]string{
		"content-type": "text/plain", "Set-Cookie": "session=stolen", "Location": "/a\r\nX-Evil: 1", "Cache-Control": "no-store",
	}})
	if w.Code != 201 || w.Header().Get("Content-Type") != "text/plain" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	if w.Header().Get("Set-Cookie") != "" || w.Header().Get("Location") != "" {
		t.Fatalf("forbidden header passed: %v", w.Header())
	}
	w = httptest.NewRecorder()
	WriteResponse(w, &callpb.Response{Status: 7})
	if w.Code != 502 {
		t.Fatalf("bad status passed as %d", w.Code)
	}
}
