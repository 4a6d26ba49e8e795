package metrics

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// Sources are where the metrics come from and where they are served.
type Sources struct {
	GateLog  string // the gate agent's audit log: one record per decision
	AdminLog string // the admin audit log: one record per command
	Socket   string // the root-only unix socket /metrics is served on
}

// Run counts gate decisions and admin commands from the audit logs as they
// are written (from their end when Run starts) and serves the metrics on
// src.Socket, until ctx ends. The returned channel closes when both
// followers and the server have stopped.
func (m *Metrics) Run(ctx context.Context, src Sources, log *slog.Logger) <-chan struct{} {
	var wg sync.WaitGroup
	follow := func(p string, fn func(auditlog.Record)) {
		from := size(p) // before Run returns: nothing written after it is missed
		wg.Go(func() {
			if err := auditlog.Follow(ctx, p, from, fn); err != nil {
				log.Warn("metrics: cannot follow audit log", "log", p, "error", err)
			}
		})
	}
	follow(src.GateLog, func(r auditlog.Record) { m.Gate(r, time.Now()) })
	follow(src.AdminLog, m.adminRecord)
	wg.Go(func() {
		if err := m.Serve(ctx, src.Socket); err != nil {
			log.Warn("metrics socket stopped", "error", err)
		}
	})
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// adminRecord counts the command an admin audit record is about (its
// script is "e2sctl <command>").
func (m *Metrics) adminRecord(r auditlog.Record) {
	m.Admin(strings.TrimPrefix(r.Script, "e2sctl "), r.Decision)
}

func size(p string) int64 {
	if st, err := os.Stat(p); err == nil {
		return st.Size()
	}
	return 0
}
