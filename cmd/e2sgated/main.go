// Command e2sgated is the supervisor of the e2sgate appliance; run as
// "e2sgated gate", its gate agent; "e2sgated accounts init" is the
// install-time step that creates the first operators' role book.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
	"github.com/e2sgate/e2sgate/internal/daemon/supervisor"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "gate":
		err = runGate(ctx, log.With("source", "gateagent"))
	case len(os.Args) > 1 && os.Args[1] == "accounts":
		err = accounts(os.Args[2:])
	default:
		err = run(ctx, log)
	}
	if err != nil {
		log.Error("e2sgated failed", "error", err)
		fmt.Fprintln(os.Stderr, "e2sgated:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	cfgPath := flag.String("config", "", "configuration file (YAML); empty: embedded defaults")
	check := flag.Bool("check", false, "validate the configuration and exit")
	flag.Parse()
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *check {
		fmt.Println("configuration ok")
		return nil
	}
	var s *supervisor.Supervisor
	rt, closeRT, err := runtimeFor(cfg, log, func(e gateagent.Event) { s.Audit(e) })
	if err != nil {
		return err
	}
	defer func() {
		if err := closeRT(); err != nil {
			log.Error("runtime clean-up", "error", err)
		}
	}()
	s, err = supervisor.New(cfg, log, rt)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// runGate is the gate agent process: its config is the first line on
// stdin, then compartment attachments, one JSON line each; it acknowledges
// each attachment on stdout.
func runGate(ctx context.Context, log *slog.Logger) error {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("gate agent: read config from supervisor: %w", err)
	}
	var cfg gateagent.Config
	if err := json.Unmarshal(line, &cfg); err != nil {
		return fmt.Errorf("gate agent: config: %w", err)
	}
	return gateagent.Run(ctx, log, cfg, in, os.Stdout)
}
