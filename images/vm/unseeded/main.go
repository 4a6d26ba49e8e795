// Command unseeded is the appliance's web front while it has no usable
// seed: it answers every request 503 with a reason id and the next step, so
// a box without its configuration says what it lacks instead of being
// unreachable, and serves nothing else (never an open appliance).
//
//	unseeded -listen :8443 -state /var/lib/e2sgate-seed/state
//
// The state file holds the reason id e2sgate-firstboot found (first word
// of its first line). The TLS certificate is made at start and lives in
// memory only: it proves nothing, and the page says so.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Reasons are the ids firstboot writes, with what they mean and what to do.
var Reasons = map[string]struct{ Message, Next string }{
	"seed.missing": {
		"this appliance has no seed: no disk labelled E2SSEED was attached at boot",
		"attach a seed disk (vfat, label E2SSEED) with e2sgate.yaml and keys/ROLE.pub, then reboot; see docs/OPERATIONS.md \"The seed\"",
	},
	"seed.no_config": {
		"the seed disk has no e2sgate.yaml",
		"put e2sgate.yaml at the top of the seed disk, then reboot; see docs/OPERATIONS.md \"The seed\"",
	},
	"seed.config_refused": {
		"the seed's e2sgate.yaml was refused; the console and the journal of e2sgate-firstboot say why",
		"fix e2sgate.yaml on the seed (e2sgated -config FILE -check shows the error), then reboot",
	},
}

// Fallback is the reason given when the state file is missing or unknown.
const Fallback = "seed.missing"

func main() {
	listen := flag.String("listen", ":8443", "address of the web front")
	state := flag.String("state", "/var/lib/e2sgate-seed/state", "file with the reason id firstboot found")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, log, *listen, *state); err != nil {
		log.Error("unseeded web front stopped", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, listen, state string) error {
	reason := ReadReason(state)
	cert, err := selfSigned()
	if err != nil {
		return fmt.Errorf("make a TLS certificate: %w", err)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s (is e2sgated running after all?): %w", listen, err)
	}
	srv := &http.Server{
		Handler:           Handler(reason),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	log.Warn("the appliance is not configured: the web front answers 503", "reason", reason,
		"next", Reasons[reason].Next, "listen", l.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.ServeTLS(l, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// ReadReason is the reason id in the state file, or Fallback when the file
// is missing or names no known reason.
func ReadReason(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return Fallback
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return Fallback
	}
	if _, ok := Reasons[f[0]]; !ok {
		return Fallback
	}
	return f[0]
}

// Handler answers every request 503 with the reason, as the gate answers
// its refusals: X-E2S-Reason and a JSON body, here with the next step.
func Handler(reason string) http.Handler {
	r, ok := Reasons[reason]
	if !ok {
		reason, r = Fallback, Reasons[Fallback]
	}
	body, _ := json.Marshal(map[string]string{"error": reason, "message": r.Message, "next": r.Next})
	body = append(body, '\n')
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("X-E2S-Reason", reason)
		h.Set("Cache-Control", "no-store")
		h.Set("Retry-After", "300")
		w.WriteHeader(http.StatusServiceUnavailable)
		if req.Method != http.MethodHead {
			w.Write(body)
		}
	})
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "e2sgate (not configured)"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
