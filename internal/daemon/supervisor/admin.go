package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/daemon/admin"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
	"github.com/e2sgate/e2sgate/internal/daemon/metrics"
	"github.com/e2sgate/e2sgate/policies"
	"github.com/e2sgate/e2sgate/policies/lifecycle"
)

// ProposalTTL is how long a two-person proposal waits for its approval.
const ProposalTTL = time.Hour

// The supervisor's side of administration: the admin socket under run_dir,
// its own audit log (admin.log, beside the gate agent's, signed with the
// same checkpoint key), the compartment commands, and the policy versions
// the gate agent enforces, kept by package lifecycle under
// data_dir/policy. The gate agent always loads the active version;
// activation replaces it and sends the gate agent SIGHUP.

func (s *Supervisor) policyRoot() string  { return filepath.Join(s.cfg.DataDir, "policy") }
func (s *Supervisor) adminSocket() string { return filepath.Join(s.cfg.RunDir, "admin.sock") }

// policyDir is the directory the gate agent loads its policy set from.
func (s *Supervisor) policyDir() string { return lifecycle.Dir(s.policyRoot(), s.cfg.PolicyDir) }

func (s *Supervisor) sourcePolicy() fs.FS {
	if s.cfg.PolicyDir != "" {
		return os.DirFS(s.cfg.PolicyDir)
	}
	return policies.Default
}

func (s *Supervisor) labels() map[string]string {
	m := map[string]string{}
	for n, c := range s.cfg.Compartments.ByName() {
		m[n] = c.Label
	}
	return m
}

// startAdmin opens the admin audit log, the role book and proposals, makes
// sure a policy version is active, and serves the admin socket until ctx
// ends. The returned function closes what it opened.
func (s *Supervisor) startAdmin(ctx context.Context) (func(), error) {
	adminDir := filepath.Join(s.cfg.DataDir, "admin")
	if err := os.MkdirAll(adminDir, 0o700); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	auditDir := filepath.Join(s.cfg.DataDir, "audit")
	src := s.sourcePolicy()
	pol, err := lifecycle.Open(lifecycle.Config{
		Root: s.policyRoot(), Source: src, Compartments: config.Names, Labels: s.labels(),
		AuditLog: filepath.Join(auditDir, "audit.log"), Reload: s.reloadGate, Log: s.log,
	})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	alog, err := auditlog.OpenWith(filepath.Join(auditDir, "admin.log"), auditlog.Options{SyslogTag: "e2sgate-admin", Log: s.log})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	seed, err := fs.ReadFile(src, "roles.yaml")
	if err != nil {
		seed = []byte("version: 1\naccounts: []\n")
	}
	roles, err := admin.OpenRoles(filepath.Join(adminDir, "roles.yaml"), seed)
	if err != nil {
		alog.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	for _, err := range roles.Mismatches(admin.SystemAccounts) {
		s.log.Warn("role account holds no role", "error", err)
	}
	if len(roles.Accounts()) == 0 {
		// A fresh install: tell the newcomer the one step that makes e2sctl usable.
		self, _ := os.Executable()
		hint := fmt.Sprintf("no operator accounts yet, so e2sctl refuses everyone (root has no role): stop e2sgated, run %s accounts init NAME=ROLE ... as root (e.g. otto=operator ada=auditor; docs/OPERATIONS.md \"First operators\"), start it again", self)
		s.log.Warn("role book has no accounts", "role_book", filepath.Join(adminDir, "roles.yaml"), "next", hint)
		fmt.Fprintln(os.Stdout, "e2sgate: "+hint)
	}
	authz, err := admin.NewAuthorizer(ctx, src, roles)
	if err != nil {
		alog.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	props, err := admin.OpenProposals(filepath.Join(adminDir, "proposals.json"), ProposalTTL, nil)
	if err != nil {
		alog.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	reasons, err := admin.LoadReasons(src, "reasons.yaml", "admin-reasons.yaml")
	if err != nil {
		alog.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	srv := admin.New(admin.Config{
		Audit: alog, Roles: roles, Authz: authz, Proposals: props,
		AuditLogs: map[string]string{"gate": filepath.Join(auditDir, "audit.log"), "admin": filepath.Join(auditDir, "admin.log")},
		PubKey:    filepath.Join(auditDir, "audit.pub"),
		Explain:   &admin.Explainer{Reasons: reasons, Labels: s.labels(), Modules: pol.Modules},
		Log:       s.log,
	})
	s.registerAdmin(srv)
	pol.Register(srv)
	met := s.startMetrics(ctx, srv, auditDir)
	l, err := admin.Listen(s.adminSocket())
	if err != nil {
		alog.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, l); err != nil {
			s.log.Error("admin socket stopped", "error", err)
		}
	}()
	s.log.Info("admin socket ready", "socket", s.adminSocket(), "accounts", len(roles.Accounts()))
	return func() { l.Close(); <-done; pol.Close(); <-met; alog.Close() }, nil
}

func (s *Supervisor) registerAdmin(srv *admin.Server) {
	s.registerKeys(srv)
	srv.Register("status", admin.Command{Run: func(context.Context, admin.Caller, json.RawMessage) (any, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		b, err := json.Marshal(s.status) // a deep copy
		return json.RawMessage(b), err
	}})
	srv.Register("compartment.restart", admin.Command{Run: func(_ context.Context, _ admin.Caller, args json.RawMessage) (any, error) {
		var a struct {
			Name string `json:"name"`
		}
		json.Unmarshal(args, &a)
		s.mu.Lock()
		cs := s.status.Compartments[a.Name]
		pid := 0
		if cs != nil {
			pid = cs.Pid
		}
		s.mu.Unlock()
		if cs == nil {
			return nil, fmt.Errorf("%w: no compartment %q (have %s)", admin.ErrBadRequest, a.Name, strings.Join(config.Names, ", "))
		}
		if pid == 0 {
			return nil, fmt.Errorf("compartment %s is not running (%s)", a.Name, cs.State)
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			return nil, fmt.Errorf("restart %s: %w", a.Name, err)
		}
		return map[string]any{"compartment": a.Name, "stopped_pid": pid, "note": "the supervisor starts it again"}, nil
	}})
	srv.Register("compartment.stop", admin.Command{Run: func(_ context.Context, _ admin.Caller, args json.RawMessage) (any, error) {
		name, err := s.compartmentArg(args)
		if err != nil {
			return nil, err
		}
		return s.stopCompartment(name)
	}})
	srv.Register("compartment.start", admin.Command{Run: func(_ context.Context, _ admin.Caller, args json.RawMessage) (any, error) {
		name, err := s.compartmentArg(args)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		ch := s.held[name]
		delete(s.held, name)
		s.mu.Unlock()
		if ch == nil {
			return nil, fmt.Errorf("%w: %s was not stopped by an operator", admin.ErrBadRequest, name)
		}
		close(ch)
		return map[string]string{"compartment": name, "state": "starting"}, nil
	}})
}

// reloadGate tells the gate agent to load the policy set in force.
func (s *Supervisor) reloadGate() {
	s.mu.Lock()
	pid := s.status.GatePid
	s.mu.Unlock()
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGHUP)
	}
}

// startMetrics gives the metrics the registry in force and the restart
// counts, runs them on the audit logs, and serves them to the operator's
// `e2sctl metrics`. The returned channel closes when they have stopped.
func (s *Supervisor) startMetrics(ctx context.Context, srv *admin.Server, auditDir string) <-chan struct{} {
	scripts := func() []string {
		reg, err := gateagent.LoadRegistry(os.DirFS(s.policyDir()), "registry.yaml", config.Names)
		if err != nil {
			return nil
		}
		return metrics.Scripts(reg.Scripts)
	}
	restarts := func() map[string]int {
		s.mu.Lock()
		defer s.mu.Unlock()
		m := map[string]int{}
		for n, c := range s.status.Compartments {
			m[n] = c.Restarts
		}
		return m
	}
	met := metrics.New(scripts, restarts)
	srv.Register("metrics", admin.Command{Run: func(context.Context, admin.Caller, json.RawMessage) (any, error) {
		b, err := met.Text()
		return string(b), err
	}})
	return met.Run(ctx, metrics.Sources{
		GateLog:  filepath.Join(auditDir, "audit.log"),
		AdminLog: filepath.Join(auditDir, "admin.log"),
		Socket:   filepath.Join(s.cfg.RunDir, "metrics.sock"),
	}, s.log)
}

func (s *Supervisor) compartmentArg(args json.RawMessage) (string, error) {
	var a struct {
		Name string `json:"name"`
	}
	json.Unmarshal(args, &a)
	if !slices.Contains(config.Names, a.Name) {
		return "", fmt.Errorf("%w: no compartment %q (have %s)", admin.ErrBadRequest, a.Name, strings.Join(config.Names, ", "))
	}
	return a.Name, nil
}

// stopCompartment holds name stopped (its supervise loop waits in
// waitUnheld) and ends the running process.
func (s *Supervisor) stopCompartment(name string) (any, error) {
	s.mu.Lock()
	if s.held == nil {
		s.held = map[string]chan struct{}{}
	}
	if s.held[name] == nil {
		s.held[name] = make(chan struct{})
	}
	pid := s.status.Compartments[name].Pid
	s.mu.Unlock()
	if pid > 0 {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return nil, fmt.Errorf("stop %s: %w", name, err)
		}
	}
	return map[string]any{"compartment": name, "stopped_pid": pid, "state": "stopped until e2sctl compartment start " + name}, nil
}

func (s *Supervisor) isHeld(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[name] != nil
}

// waitUnheld returns once name may run (at once unless an operator stopped
// it); false if ctx ended first.
func (s *Supervisor) waitUnheld(ctx context.Context, name string) bool {
	for {
		s.mu.Lock()
		ch := s.held[name]
		s.mu.Unlock()
		if ch == nil {
			return ctx.Err() == nil
		}
		s.setState(name, Stopped, 0)
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}
