// Command purchasing is the purchasing compartment's program.
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/purchasing"
)

func main() {
	err := protocol.Main(func(env protocol.Env, log *slog.Logger, gate *protocol.Gate) (protocol.Compartment, error) {
		return purchasing.New(log, gate, env.DataDir)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "purchasing:", err)
		os.Exit(1)
	}
}
