// Command e2s is the buyer / business client: it protects documents for a
// partner (compress, sign, encrypt), opens them and signs the file
// acknowledgement, checks acknowledgements, signs request bodies for the
// header signature, seals data at rest, exchanges certificates and buys
// from the appliance, with one configuration file naming the keystore,
// certstore and credential. The logic is in package cli and below; see
// README.md and "e2s help".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/e2sgate/e2sgate/internal/client/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.Report(os.Stderr, err))
}
