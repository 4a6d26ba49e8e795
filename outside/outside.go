// Package outside is the Internet-facing web front: HTTPS (TLS 1.3 only) on
// the listening socket the supervisor hands it, static content from a
// read-only tree with no directory listing, and /cgi-bin/<compartment>/
// <script>[/path] turned into a call to the gate agent. It holds no secret
// but its TLS key and reaches nothing but the gate agent.
package outside

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/outside/compartment"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Server is the web front.
type Server struct {
	log  *slog.Logger
	cfg  compartment.Config
	gate interface {
		Call(ctx context.Context, c *callpb.Call) (*callpb.Response, error)
	}
	srv *http.Server
}

// New builds the web front; dataDir holds the generated TLS credential.
func New(log *slog.Logger, cfg compartment.Config, gate *protocol.Gate, dataDir string) (*Server, error) {
	cert, fresh, err := loadOrCreateCert(cfg.TLSCert, cfg.TLSKey, filepath.Join(dataDir, "tls"))
	if err != nil {
		return nil, err
	}
	fp := Fingerprint(cert.Certificate[0])
	if fresh {
		log.Warn("generated a self-signed TLS certificate; check browsers against this fingerprint", "sha256", fp)
	} else {
		log.Info("TLS certificate", "sha256", fp)
	}
	s := &Server{log: log, cfg: cfg, gate: gate}
	mux := http.NewServeMux()
	mux.Handle(CGIPrefix, http.HandlerFunc(s.cgi))
	mux.Handle("/", staticHandler(cfg.StaticDir))
	s.srv = &http.Server{
		Handler:           secureHeaders(mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequestClientCert,
		},
	}
	return s, nil
}

// Serve serves HTTPS on l until it is closed.
func (s *Server) Serve(l net.Listener) error { return s.srv.ServeTLS(l, "", "") }

// Handle is the outside compartment's own plugin: a health call only.
func (s *Server) Handle(_ context.Context, c *callpb.Call) (*callpb.Response, error) {
	if c.GetScript() == "health" {
		return protocol.JSON(200, map[string]string{"compartment": "outside", "status": "ok"}), nil
	}
	return protocol.Error(404, "no_handler", "no such handler"), nil
}

func (s *Server) cgi(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > s.cfg.MaxBody {
		httpError(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds the limit")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpError(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds the limit")
			return
		}
		httpError(w, http.StatusBadRequest, "bad_body", "could not read the request body")
		return
	}
	call, err := CallFromRequest(r, body)
	if err != nil {
		httpError(w, http.StatusNotFound, "not_found", "no such script")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CallTimeout)
	defer cancel()
	resp, err := s.gate.Call(ctx, call)
	if status.Code(err) == codes.ResourceExhausted { // the gate's transport cap for outside (audited there)
		httpError(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds the limit")
		return
	}
	if err != nil {
		s.log.Error("gate call failed", "script", call.Script, "error", err)
		httpError(w, http.StatusBadGateway, "gate_unavailable", "the gateway is not available; try again shortly")
		return
	}
	WriteResponse(w, resp)
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, `{"error":"`+code+`","message":"`+msg+`"}`)
}

func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Strict-Transport-Security", "max-age=31536000")
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

// staticHandler serves dir read-only, GET and HEAD only, and answers 404
// for a directory without an index.html instead of listing it.
func staticHandler(dir string) http.Handler {
	fsrv := http.FileServer(noListing{http.Dir(dir)})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			httpError(w, http.StatusMethodNotAllowed, "method_not_allowed", "static content is read-only")
			return
		}
		fsrv.ServeHTTP(w, r)
	})
}

type noListing struct{ fs http.FileSystem }

func (n noListing) Open(name string) (http.File, error) {
	f, err := n.fs.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		idx, err := n.fs.Open(filepath.Join(name, "index.html"))
		if err != nil {
			f.Close()
			return nil, fs.ErrNotExist
		}
		idx.Close()
	}
	return f, nil
}
