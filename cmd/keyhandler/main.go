// Command keyhandler is the key handler compartment's program.
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/e2sgate/e2sgate/compartments/keyhandler"
	"github.com/e2sgate/e2sgate/compartments/protocol"
)

func main() {
	// Refused signing requests go to the supervisor as audit event lines
	// on our original stdout (go-plugin takes os.Stdout over once it
	// serves); the supervisor hands them to the gate agent's audit log.
	events := os.Stdout
	var mu sync.Mutex
	err := protocol.Main(func(env protocol.Env, log *slog.Logger, _ *protocol.Gate) (protocol.Compartment, error) {
		h, err := keyhandler.Open(log, env.DataDir)
		if err != nil {
			return nil, err
		}
		h.Audit = func(e keyhandler.Event) {
			b, _ := json.Marshal(map[string]keyhandler.Event{"e2s_event": e})
			mu.Lock()
			events.Write(append(b, '\n'))
			mu.Unlock()
		}
		return h, nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "keyhandler:", err)
		os.Exit(1)
	}
}
