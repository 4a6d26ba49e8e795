// Command keyhandler is the key handler compartment's program.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/e2sgate/e2sgate/compartments/keyhandler"
	"github.com/e2sgate/e2sgate/compartments/protocol"
)

func main() {
	err := protocol.Main(func(env protocol.Env, log *slog.Logger, _ *protocol.Gate) (protocol.Compartment, error) {
		return keyhandler.Open(log, env.DataDir)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyhandler:", err)
		os.Exit(1)
	}
}
