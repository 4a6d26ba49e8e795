// Command payment is the payment compartment's program.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/e2sgate/e2sgate/compartments/payment"
	"github.com/e2sgate/e2sgate/compartments/protocol"
)

func main() {
	err := protocol.Main(func(_ protocol.Env, log *slog.Logger, _ *protocol.Gate) (protocol.Compartment, error) {
		return payment.New(log), nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		os.Exit(1)
	}
}
