package outside

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// CGIPrefix is where scripts live in the URL space.
const CGIPrefix = "/cgi-bin/"

// ErrNotCGI: the path is not /cgi-bin/<compartment>/<script>[/path].
var ErrNotCGI = fmt.Errorf("not a cgi-bin path")

// CallFromRequest turns an HTTP request and its (already size-limited)
// body into a call, one to one, with the RFC 3875 meta-variables. It is a
// pure conversion: nothing is sent.
func CallFromRequest(r *http.Request, body []byte) (*callpb.Call, error) {
	rest, ok := strings.CutPrefix(r.URL.Path, CGIPrefix)
	if !ok {
		return nil, ErrNotCGI
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return nil, ErrNotCGI
	}
	script := parts[0] + "/" + parts[1]
	pathInfo := ""
	if len(parts) == 3 {
		pathInfo = "/" + parts[2]
	}
	host, port, _ := net.SplitHostPort(r.Host)
	if host == "" {
		host = r.Host
	}
	remoteAddr, remotePort, _ := net.SplitHostPort(r.RemoteAddr)
	meta := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE":   "e2sgate-outside",
		"SERVER_PROTOCOL":   r.Proto,
		"SERVER_NAME":       host,
		"SERVER_PORT":       port,
		"REQUEST_METHOD":    r.Method,
		"SCRIPT_NAME":       CGIPrefix + script,
		"PATH_INFO":         pathInfo,
		"QUERY_STRING":      r.URL.RawQuery,
		"REMOTE_ADDR":       remoteAddr,
		"REMOTE_PORT":       remotePort,
		"REQUEST_URI":       r.URL.RequestURI(),
	}
	if len(body) > 0 || r.ContentLength > 0 {
		meta["CONTENT_LENGTH"] = fmt.Sprint(len(body))
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		meta["CONTENT_TYPE"] = ct
	}
	for k, v := range r.Header {
		k = strings.ToUpper(strings.ReplaceAll(k, "-", "_"))
		switch k {
		case "CONTENT_TYPE", "CONTENT_LENGTH", "PROXY", "AUTHORIZATION", "COOKIE":
			// CONTENT_* are set above; Proxy is the httpoxy hole; credentials
			// never travel in meta-variables.
			continue
		}
		meta["HTTP_"+k] = strings.Join(v, ", ")
	}
	user := ""
	if r.TLS != nil {
		meta["HTTPS"] = "on"
		if len(r.TLS.PeerCertificates) > 0 {
			c := r.TLS.PeerCertificates[0]
			sum := sha256.Sum256(c.Raw)
			meta["SSL_CLIENT_S_DN"] = c.Subject.String()
			meta["SSL_CLIENT_I_DN"] = c.Issuer.String()
			meta["SSL_CLIENT_M_SERIAL"] = c.SerialNumber.Text(16)
			meta["SSL_CLIENT_CERT"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
			meta["SSL_CLIENT_FINGERPRINT"] = hex.EncodeToString(sum[:])
			// The web front does not verify client certificates; the
			// owning compartment checks them against registered buyers.
			meta["SSL_CLIENT_VERIFY"] = "GENEROUS"
			user = "cert:" + hex.EncodeToString(sum[:8])
		} else {
			meta["SSL_CLIENT_VERIFY"] = "NONE"
		}
	}
	return &callpb.Call{
		Script: script, Method: r.Method, PathInfo: pathInfo, Query: r.URL.RawQuery,
		Meta: meta, Body: body, User: user,
	}, nil
}

// answerHeaders are the only headers a compartment may set on an answer.
var answerHeaders = []string{"Content-Type", "Content-Disposition", "Cache-Control", "Location", "Etag", "Last-Modified", "X-E2s-Reason"}

// WriteResponse writes a call's answer as the HTTP response.
func WriteResponse(w http.ResponseWriter, resp *callpb.Response) {
	h := w.Header()
	for k, v := range resp.GetHeaders() {
		ck := http.CanonicalHeaderKey(k)
		for _, a := range answerHeaders {
			if ck == a && !strings.ContainsAny(v, "\r\n") {
				h.Set(ck, v)
			}
		}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/octet-stream")
	}
	status := int(resp.GetStatus())
	if status < 100 || status > 599 {
		status = http.StatusBadGateway
	}
	w.WriteHeader(status)
	w.Write(resp.GetBody())
}
