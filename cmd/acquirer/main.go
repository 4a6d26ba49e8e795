// Command acquirer is the acquirer simulator: ISO 8583 over TLS (see
// compartments/payment/iso), run on the internal network — by the tests
// inside a network namespace of their own, by e2sgated when the config says
// simulators: true.
//
//	acquirer -listen 10.77.0.10:8583 -cert acq.pem -key acq.key -ledger ledger.jsonl
//
// e2sgated runs it itself (simulators: true, no payment.acquirer configured)
// when it is beside e2sgated; by hand: make the certificate to pin (-init),
// then start it in a namespace of its own on an appliance's internal network
// (-netns; needs root and ip(8)):
//
//	acquirer -cert acq.pem -key acq.key -init
//	acquirer -netns e2s-acquirer -internal-netns e2sgate-internal-net -cert acq.pem -key acq.key
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/e2sgate/e2sgate/internal/sim/acquirer"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("program", "acquirer")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, log); err != nil {
		fmt.Fprintln(os.Stderr, "acquirer:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	listen := flag.String("listen", "10.77.0.10:8583", "address to listen on")
	certFile := flag.String("cert", "acquirer.pem", "TLS certificate (PEM); made self-signed if missing")
	keyFile := flag.String("key", "acquirer.key", "TLS key (PEM)")
	ledger := flag.String("ledger", "", "append every charge to this JSON-lines file")
	timeoutAmount := flag.Int64("timeout-amount", 99999, "never answer an authorisation of exactly this many cents (0: off)")
	timeoutPAN := flag.String("timeout-pan", "4000000000000077", "never answer requests for this card")
	initOnly := flag.Bool("init", false, "make the certificate (if missing) and exit")
	netns := flag.String("netns", "", "run in a new network namespace of this name, attached to the internal network")
	internal := flag.String("internal-netns", "e2sgate-internal-net", "the appliance's internal network namespace, <instance>-internal-net (with -netns)")
	bridge := flag.String("bridge", "e2sint0", "the internal network's bridge (with -netns)")
	flag.Parse()
	if *netns != "" {
		return attach(ctx, *netns, *internal, *bridge, *listen, withoutFlag(os.Args[1:], "netns"))
	}

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("listen %q: %w", *listen, err)
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = append(ips, ip)
	}
	cert, err := acquirer.LoadOrCreateCert(*certFile, *keyFile, ips)
	if err != nil || *initOnly {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); l.Close() }()
	s := &acquirer.Server{Cards: acquirer.DefaultCards(), TimeoutAmount: *timeoutAmount, TimeoutPAN: *timeoutPAN, Ledger: *ledger, Log: log}
	log.Info("acquirer simulator listening", "addr", l.Addr().String(), "cert", *certFile)
	return s.Serve(l, cert)
}
