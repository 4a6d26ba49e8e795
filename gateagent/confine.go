package gateagent

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
)

// confineSelf restricts the gate agent, once its listeners are up and its
// audit log and policy are open, to what it still needs (gVisor's gofer
// does the same "in case it is compromised"): its audit directory
// read-write; the policy tree (for reloads), the plugin sockets and syslog
// read-only; no TCP at all. A kernel without Landlock is logged, not fatal:
// the supervisor's start-up check already requires it when confinement is
// required.
func confineSelf(log *slog.Logger, cfg Config) error {
	r := ConfineRules(cfg)
	err := landlock.Restrict(r)
	if errors.Is(err, landlock.ErrUnsupported) {
		log.Warn("gate agent not confined by Landlock: the kernel lacks it", "error", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("confine gate agent: %w", err)
	}
	log.Info("gate agent confined", "read_write", r.ReadWrite, "read_only", r.ReadOnly)
	return nil
}

// ConfineRules are the Landlock rules the gate agent applies to itself
// after setup (a probe of its confinement applies the same).
func ConfineRules(cfg Config) landlock.Rules {
	r := landlock.Rules{ReadWrite: []string{filepath.Dir(cfg.AuditLog)}, ReadOnly: []string{"/dev/log"}}
	if cfg.PolicyDir != "" {
		// The active set is a symlink into versions/ beside it.
		r.ReadOnly = append(r.ReadOnly, filepath.Dir(cfg.PolicyDir))
	}
	for _, c := range cfg.Compartments {
		if c.PluginDir != "" {
			r.ReadOnly = append(r.ReadOnly, c.PluginDir)
		}
	}
	return r
}
