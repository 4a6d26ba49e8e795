// Command inside is the inside compartment's program.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/inside"
)

func main() {
	err := protocol.Main(func(_ protocol.Env, log *slog.Logger, _ *protocol.Gate) (protocol.Compartment, error) {
		return inside.New(log), nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "inside:", err)
		os.Exit(1)
	}
}
