// Command outside is the outside compartment's program: the web front. It
// never binds: it serves on fd 3, the listening socket the supervisor opened.
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/outside"
	"github.com/e2sgate/e2sgate/outside/compartment"
)

func main() {
	err := protocol.Main(func(env protocol.Env, log *slog.Logger, gate *protocol.Gate) (protocol.Compartment, error) {
		cfg := compartment.DefaultConfig()
		if err := json.Unmarshal(env.Config, &cfg); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		l, err := net.FileListener(os.NewFile(3, "web-listener"))
		if err != nil {
			return nil, fmt.Errorf("listening socket on fd 3 (handed over by e2sgated): %w", err)
		}
		s, err := outside.New(log, cfg, gate, env.DataDir)
		if err != nil {
			return nil, err
		}
		go func() {
			err := s.Serve(l)
			log.Error("web front stopped", "error", err)
			os.Exit(1)
		}()
		return s, nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "outside:", err)
		os.Exit(1)
	}
}
