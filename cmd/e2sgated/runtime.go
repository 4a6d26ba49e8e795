package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/compartments/sandbox/bpfguard"
	"github.com/e2sgate/e2sgate/compartments/sandbox/netns"
	"github.com/e2sgate/e2sgate/compartments/sandbox/netns/netattach"
	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
)

// errConfinement: a required confinement layer is missing.
var errConfinement = errors.New("confinement layer missing")

// runtimeFor builds the configured sandbox runtime. For runc it first
// checks every kernel layer and refuses to start when one is missing,
// unless the config lowers the requirement (then it only warns). audit
// receives the kernel layers' denials; close releases the runtime.
func runtimeFor(cfg *config.Config, log *slog.Logger, audit func(gateagent.Event)) (rt sandbox.Runtime, close func() error, err error) {
	switch cfg.Runtime {
	case "exec":
		return sandbox.Exec{}, func() error { return nil }, nil
	case "runc", "containerd":
		// The pinned runc `make build` puts beside the programs.
		runc, err := runcBinary(cfg)
		if err != nil {
			return nil, nil, err
		}
		report := (&sandbox.Runc{Binary: runc}).Check()
		for _, l := range report {
			if l.Err != nil {
				log.Warn("confinement layer missing", "layer", l.Layer, "error", l.Err)
			} else {
				log.Info("confinement layer present", "layer", l.Layer, "detail", l.Detail)
			}
		}
		if err := report.Err(); errors.Is(err, sandbox.ErrNoRunc) {
			// Lowering confinement cannot help: every sandbox runs runc.
			return nil, nil, fmt.Errorf("%w: %w", errConfinement, err)
		}
		if err := report.Err(); err != nil && cfg.Confinement == "required" {
			return nil, nil, fmt.Errorf("%w: %v; fix the host (see README) or set confinement: lowered in the config", errConfinement, err)
		}
		host := netns.New(netns.Config{Prefix: cfg.Instance + "-", Logger: log})
		if err := bpfguard.LSMAvailable(); err != nil {
			log.Info("optional BPF LSM layer not available on this kernel", "error", err)
		}
		onDeny := func(e bpfguard.Event) {
			audit(gateagent.Event{Compartment: e.Compartment, Kind: "kernel/" + string(e.Kind), Decision: "deny", Reason: e.Reason(), Detail: e.String()})
		}
		kd, err := startKernelDenials(cfg, log, audit)
		if err != nil {
			host.Close()
			return nil, nil, err
		}
		r := &sandbox.Runc{
			Binary:          runc,
			CgroupParent:    cfg.Instance,
			IDPrefix:        cfg.Instance + "-",
			StateDir:        cfg.RunDir,
			ImageDir:        filepath.Join(cfg.RunDir, "images"),
			Net:             netattach.New(host, onDeny, log),
			SeccompListener: kd.seccompListener(),
			DenialReports:   kd.reports,
			Log:             log,
		}
		if cfg.Runtime == "runc" {
			return r, func() error { return errors.Join(host.Close(), kd.close()) }, nil
		}
		c := &sandbox.Containerd{Runc: *r, Address: cfg.ContainerdAddress, Namespace: cfg.Instance}
		return viaContainerd{c: c, runc: r, log: log}, func() error { return errors.Join(c.Close(), host.Close(), kd.close()) }, nil
	}
	return nil, nil, fmt.Errorf("runtime %q is not built into this e2sgated", cfg.Runtime)
}

// runcBinary is bin_dir/runc (bin_dir defaults to e2sgated's directory,
// as for the compartment programs).
func runcBinary(cfg *config.Config) (string, error) {
	dir := cfg.BinDir
	if dir == "" {
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find own executable: %w", err)
		}
		dir = filepath.Dir(self)
	}
	return filepath.Join(dir, "runc"), nil
}

// viaContainerd starts compartments as containerd tasks with the same
// confinement as runc. containerd cannot hand a task a file descriptor, so
// a compartment that needs one (outside: the web listener) runs under runc.
type viaContainerd struct {
	c    *sandbox.Containerd
	runc *sandbox.Runc
	log  *slog.Logger
}

func (v viaContainerd) Name() string { return "containerd" }

// Version is the runc version (the shim and the fallback both run it).
func (v viaContainerd) Version() string { return v.runc.Version() }

func (v viaContainerd) Start(ctx context.Context, s sandbox.Spec) (sandbox.Process, error) {
	if len(s.ExtraFiles) > 0 {
		v.log.Info("compartment needs a handed-over socket; containerd cannot pass it, starting it under runc", "compartment", s.Name)
		return v.runc.Start(ctx, s)
	}
	return v.c.Start(ctx, s)
}
