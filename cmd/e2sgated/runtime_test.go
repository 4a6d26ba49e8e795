package main

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
)

// TestRuntimeRefusesWithoutPinnedRunc: with no runc in bin_dir, e2sgated
// refuses to start, even with confinement lowered, and says to run make
// build; it never falls back to a runc on PATH.
func TestRuntimeRefusesWithoutPinnedRunc(t *testing.T) {
	for _, rt := range []string{"runc", "containerd"} {
		for _, conf := range []string{"required", "lowered"} {
			t.Run(rt+"/"+conf, func(t *testing.T) {
				cfg := config.Default()
				cfg.Runtime, cfg.Confinement, cfg.BinDir = rt, conf, t.TempDir()
				_, _, err := runtimeFor(cfg, slog.New(slog.DiscardHandler), func(gateagent.Event) {})
				if !errors.Is(err, sandbox.ErrNoRunc) || !strings.Contains(err.Error(), "make build") {
					t.Fatalf("runtimeFor = %v, want ErrNoRunc saying to run make build", err)
				}
			})
		}
	}
}
