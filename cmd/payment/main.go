// Command payment is the payment compartment's program.
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/e2sgate/e2sgate/compartments/payment"
	"github.com/e2sgate/e2sgate/compartments/protocol"
)

func main() {
	err := protocol.Main(func(env protocol.Env, log *slog.Logger, _ *protocol.Gate) (protocol.Compartment, error) {
		var cfg payment.Config
		if err := json.Unmarshal(env.Config, &cfg); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		return payment.New(log, cfg, env.DataDir, nil)
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		os.Exit(1)
	}
}
