// Command e2s is the buyer / business client: it protects documents for a
// partner (compress, sign, encrypt), opens them and signs the file
// acknowledgement, checks acknowledgements, signs request bodies for the
// header signature, seals data at rest, and exchanges certificates, with
// one configuration file naming the keystore, certstore and credential.
// See README.md and "e2s help".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/e2sgate/e2sgate/internal/client"
)

func main() {
	g := globalFlags{config: client.DefaultConfigPath()}
	fs := flag.NewFlagSet("e2s", flag.ContinueOnError)
	fs.Usage = func() { usage(os.Stderr) }
	g.register(fs)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, &env{log: log, global: &g, stdout: os.Stdout, stderr: os.Stderr}, fs.Args())
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2s: %v\n", err)
		if h := client.Hint(err); h != "" {
			fmt.Fprintf(os.Stderr, "e2s: next: %s\n", h)
		}
		if errors.Is(err, client.ErrUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
