// Command inside is the inside compartment's program: its scripts, the
// back-office confirmation watcher and the SOCKS filters on the listeners
// the supervisor handed over (fd 3, 4, ...).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/inside"
)

func main() {
	// Audit events go to the supervisor as JSON lines on our original
	// stdout (go-plugin takes os.Stdout over once it serves); the
	// supervisor hands them to the gate agent, the one audit writer.
	events := os.Stdout
	var mu sync.Mutex
	audit := func(e inside.Event) {
		b, _ := json.Marshal(map[string]inside.Event{"e2s_event": e})
		mu.Lock()
		events.Write(append(b, '\n'))
		mu.Unlock()
	}
	err := protocol.Main(func(env protocol.Env, log *slog.Logger, gate *protocol.Gate) (protocol.Compartment, error) {
		var cfg inside.Config
		if err := json.Unmarshal(env.Config, &cfg); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		var ls []net.Listener
		for i := range cfg.Socks {
			f := os.NewFile(uintptr(3+i), "socks-"+cfg.Socks[i])
			l, err := net.FileListener(f)
			if err != nil {
				return nil, fmt.Errorf("socks listener of %s (fd %d): %w", cfg.Socks[i], 3+i, err)
			}
			f.Close()
			ls = append(ls, l)
		}
		if err := inside.ServeSocks(log, cfg, ls, audit); err != nil {
			return nil, err
		}
		h, err := inside.New(log, gate, cfg, env.DataDir)
		if err != nil {
			return nil, err
		}
		h.Audit = audit
		go h.Watch(context.Background())
		return h, nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "inside:", err)
		os.Exit(1)
	}
}
