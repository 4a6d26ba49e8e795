package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/e2sgate/e2sgate/compartments/sandbox/auditstream"
	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
	"github.com/e2sgate/e2sgate/compartments/sandbox/seccompnotify"
	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
	"github.com/e2sgate/e2sgate/internal/daemon/denials"
)

// kernelDenials are the readers of the seccomp and Landlock denials the
// supervisor turns into audit records (kinds kernel/seccomp and
// kernel/landlock), aggregated so a compartment cannot flood the log.
type kernelDenials struct {
	agent   *seccompnotify.Agent // nil: seccomp denials go unreported
	stream  *auditstream.Stream  // nil: Landlock denials go unreported
	agg     *denials.Aggregator
	stop    context.CancelFunc
	done    chan struct{}
	reports []string // added to every sandbox's layers in status.json
}

func startKernelDenials(cfg *config.Config, log *slog.Logger, audit func(gateagent.Event)) (*kernelDenials, error) {
	ctx, stop := context.WithCancel(context.Background())
	kd := &kernelDenials{agg: denials.New(denials.DefaultInterval, audit), stop: stop, done: make(chan struct{})}
	go func() {
		defer close(kd.done)
		kd.agg.Run(ctx)
	}()
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		kd.close()
		return nil, fmt.Errorf("run dir: %w", err)
	}
	agent, err := seccompnotify.Listen(filepath.Join(cfg.RunDir, "seccomp.sock"), func(d seccompnotify.Denial) {
		kd.agg.Add(d.Syscall, gateagent.Event{Compartment: d.Compartment, Kind: "kernel/seccomp", Decision: "deny",
			Reason: "kernel.syscall_denied", Detail: d.Detail})
	}, log)
	if err != nil {
		log.Warn("seccomp denials go unreported: the supervisor cannot listen for them; they are still denied", "error", err)
		kd.reports = append(kd.reports, "unaudited:seccomp")
	} else {
		kd.agent = agent
		kd.reports = append(kd.reports, "audit:seccomp")
	}
	kd.startLandlock(cfg, log)
	return kd, nil
}

// startLandlock subscribes to the kernel's audit records of Landlock
// denials, or says why they go unreported (they are still denied).
func (kd *kernelDenials) startLandlock(cfg *config.Config, log *slog.Logger) {
	if abi := landlock.ABI(); abi < landlock.AuditABI {
		log.Warn("Landlock denials go unreported: the kernel's Landlock cannot log them (they are still denied)",
			"abi", abi, "needs", landlock.AuditABI)
		kd.reports = append(kd.reports, "unaudited:landlock")
		return
	}
	m := auditstream.Mapper{Parent: cfg.Instance, UIDs: map[uint32]string{uint32(cfg.Gate.UID): "gate"}}
	for name, c := range cfg.Compartments {
		m.UIDs[uint32(c.UID)] = name
	}
	s, err := auditstream.Open(m, log)
	if err != nil {
		log.Warn("Landlock denials go unreported: the kernel audit stream cannot be read (they are still denied)", "error", err)
		kd.reports = append(kd.reports, "unaudited:landlock")
		return
	}
	kd.stream = s
	kd.reports = append(kd.reports, "audit:landlock")
	go s.Run(func(d auditstream.Denial) {
		reason := "kernel.fs_denied"
		switch {
		case d.Net():
			reason = "kernel.net_denied"
		case strings.HasPrefix(d.Access, "scope."):
			reason = "kernel.scope_denied"
		}
		kd.agg.Add(d.Access, gateagent.Event{Compartment: d.Compartment, Kind: "kernel/landlock", Decision: "deny",
			Reason: reason, Detail: d.Detail})
	})
}

func (kd *kernelDenials) seccompListener() string {
	if kd.agent == nil {
		return ""
	}
	return kd.agent.Path()
}

// close stops the readers, then writes what the aggregator still holds.
func (kd *kernelDenials) close() error {
	var errs []error
	if kd.agent != nil {
		errs = append(errs, kd.agent.Close())
	}
	if kd.stream != nil {
		errs = append(errs, kd.stream.Close())
	}
	kd.stop()
	<-kd.done
	return errors.Join(errs...)
}
