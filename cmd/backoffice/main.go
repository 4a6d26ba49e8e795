// Command backoffice simulates the merchant's order-processing system for
// tests and `make run`: it reads the orders the inside compartment spools
// (spool/orders/<id>.json), "delivers" each once and confirms it by writing
// spool/confirmations/<id>.json, which inside turns into a
// purchasing/delivered call through the gate agent.
//
//	backoffice -spool /var/lib/e2sgate/inside/spool
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/e2sgate/e2sgate/internal/durable"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("program", "backoffice")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	spool := flag.String("spool", "/var/lib/e2sgate/inside/spool", "the inside compartment's spool directory")
	poll := flag.Duration("poll", 300*time.Millisecond, "how often to look for new orders")
	once := flag.Bool("once", false, "confirm what is there now and exit")
	flag.Parse()
	for {
		n, err := confirm(*spool, time.Now)
		if err != nil {
			log.Error("back office", "error", err)
		}
		if n > 0 {
			log.Info("orders confirmed", "count", n)
		}
		if *once {
			if err != nil {
				fmt.Fprintln(os.Stderr, "backoffice:", err)
				os.Exit(1)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(*poll):
		}
	}
}

// confirm writes a confirmation for every spooled order that has none yet
// (pending or already handed on to purchasing, in done/).
func confirm(spool string, now func() time.Time) (int, error) {
	seen := filepath.Join(spool, "backoffice")
	if err := os.MkdirAll(seen, 0o755); err != nil {
		return 0, err
	}
	entries, err := os.ReadDir(filepath.Join(spool, "orders"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		if _, err := os.Stat(filepath.Join(seen, name)); err == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(spool, "orders", name))
		if err != nil {
			return n, err
		}
		var o struct {
			OrderID string `json:"order_id"`
		}
		if json.Unmarshal(b, &o) != nil || o.OrderID+".json" != name {
			continue
		}
		conf, _ := json.Marshal(map[string]string{"order_id": o.OrderID, "delivered_at": now().UTC().Format(time.RFC3339),
			"reference": "BO-" + o.OrderID[:min(8, len(o.OrderID))]})
		if err := durable.WriteFile(filepath.Join(spool, "confirmations", name), conf, 0o644); err != nil {
			return n, err
		}
		if err := durable.WriteFile(filepath.Join(seen, name), conf, 0o644); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
