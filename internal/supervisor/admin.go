package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing/fstest"
	"time"

	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/admin"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/config"
	"github.com/e2sgate/e2sgate/internal/metrics"
	"github.com/e2sgate/e2sgate/policies"
)

// ProposalTTL is how long a two-person proposal waits for its approval.
const ProposalTTL = time.Hour

// The supervisor's side of administration: the admin socket under run_dir,
// its own audit log (admin.log, beside the gate agent's, signed with the
// same checkpoint key), and the policy versions the gate agent enforces:
//
//	data_dir/policy/versions/N/   every set ever activated, N = 0, 1, ...
//	data_dir/policy/active        symlink to the set in force (swapped atomically)
//	data_dir/policy/history       the order of activations, for rollback
//
// The gate agent always loads data_dir/policy/active; activation replaces
// the link and sends it SIGHUP, and it swaps the whole set at once.

func (s *Supervisor) policyRoot() string    { return filepath.Join(s.cfg.DataDir, "policy") }
func (s *Supervisor) activePolicy() string  { return filepath.Join(s.policyRoot(), "active") }
func (s *Supervisor) policyHistory() string { return filepath.Join(s.policyRoot(), "history") }
func (s *Supervisor) adminSocket() string   { return filepath.Join(s.cfg.RunDir, "admin.sock") }

// policyDir is the directory the gate agent loads its policy set from.
func (s *Supervisor) policyDir() string {
	if _, err := os.Stat(s.activePolicy()); err == nil {
		return s.activePolicy()
	}
	return s.cfg.PolicyDir
}

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
	if err := s.initPolicyVersions(); err != nil {
		return nil, err
	}
	auditDir := filepath.Join(s.cfg.DataDir, "audit")
	alog, err := auditlog.OpenWith(filepath.Join(auditDir, "admin.log"), auditlog.Options{SyslogTag: "e2sgate-admin", Log: s.log})
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	src := s.sourcePolicy()
	seed, err := fs.ReadFile(src, "roles.yaml")
	if err != nil {
		seed = []byte("version: 1\naccounts: []\n")
	}
	roles, err := admin.OpenRoles(filepath.Join(adminDir, "roles.yaml"), seed)
	if err != nil {
		alog.Close()
		return nil, fmt.Errorf("admin: %w", err)
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
		Explain:   &admin.Explainer{Reasons: reasons, Labels: s.labels(), Modules: s.activeModules},
		Log:       s.log,
	})
	sh := &shadows{}
	s.registerAdmin(srv, sh)
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
	return func() { l.Close(); <-done; sh.stop(); <-met; alog.Close() }, nil
}

// PolicyArgs carry a policy set's files (read by e2sctl as the operator,
// never by root from a path the operator names).
type PolicyArgs struct {
	Files map[string]string `json:"files"`
}

// PolicyCheck is the report of `e2sctl policy check`.
type PolicyCheck struct {
	OK      bool                   `json:"ok"`
	Error   string                 `json:"error,omitempty"`
	Digest  string                 `json:"digest"`
	Scripts int                    `json:"scripts"`
	Tests   []gateagent.TestResult `json:"tests"`
	Changes []gateagent.Change     `json:"changes"`
}

// PolicyState is what `e2sctl policy show` prints.
type PolicyState struct {
	Active   int   `json:"active"`
	History  []int `json:"history"`
	Versions []int `json:"versions"`
}

func (s *Supervisor) registerAdmin(srv *admin.Server, sh *shadows) {
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
	srv.Register("policy.show", admin.Command{Run: func(context.Context, admin.Caller, json.RawMessage) (any, error) {
		return s.policyState()
	}})
	srv.Register("policy.check", admin.Command{Run: func(ctx context.Context, _ admin.Caller, args json.RawMessage) (any, error) {
		files, err := policyFiles(args)
		if err != nil {
			return nil, err
		}
		return s.checkPolicy(ctx, files), nil
	}})
	srv.Register("policy.propose", admin.Command{
		Check: func(ctx context.Context, _ admin.Caller, args json.RawMessage) (string, error) {
			files, err := policyFiles(args)
			if err != nil {
				return "", err
			}
			r := s.checkPolicy(ctx, files)
			if !r.OK {
				return "", fmt.Errorf("policy set refused: %s", r.Error)
			}
			return fmt.Sprintf("activate policy set %s (%d scripts, %d calls change)", r.Digest[:16], r.Scripts, len(r.Changes)), nil
		},
		Run: func(ctx context.Context, _ admin.Caller, args json.RawMessage) (any, error) {
			files, err := policyFiles(args)
			if err != nil {
				return nil, err
			}
			return s.activate(ctx, files)
		},
	})
	srv.Register("policy.shadow", admin.Command{Run: func(ctx context.Context, _ admin.Caller, args json.RawMessage) (any, error) {
		files, err := policyFiles(args)
		if err != nil {
			return nil, err
		}
		return sh.start(ctx, s, files)
	}})
	srv.Register("policy.shadow_report", admin.Command{Run: func(context.Context, admin.Caller, json.RawMessage) (any, error) {
		return sh.report()
	}})
	srv.Register("policy.shadow_stop", admin.Command{Run: func(context.Context, admin.Caller, json.RawMessage) (any, error) {
		r, err := sh.report()
		sh.stop()
		return r, err
	}})
	// Rolling back activates a policy set too, so it takes two people like
	// any activation.
	srv.Register("policy.rollback", admin.Command{
		Check: func(context.Context, admin.Caller, json.RawMessage) (string, error) {
			st, err := s.policyState()
			if err != nil {
				return "", err
			}
			if len(st.History) < 2 {
				return "", fmt.Errorf("%w: no earlier policy set to roll back to", admin.ErrBadRequest)
			}
			return fmt.Sprintf("roll the policy back from version %v to version %v", st.History[len(st.History)-1], st.History[len(st.History)-2]), nil
		},
		Run: func(ctx context.Context, _ admin.Caller, _ json.RawMessage) (any, error) {
			return s.rollback(ctx)
		},
	})
}

func policyFiles(args json.RawMessage) (map[string]string, error) {
	var a PolicyArgs
	if err := json.Unmarshal(args, &a); err != nil || len(a.Files) == 0 {
		return nil, fmt.Errorf("%w: no policy files", admin.ErrBadRequest)
	}
	for n := range a.Files {
		if n != path.Base(n) || strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".rego") || strings.HasSuffix(n, ".yaml")) {
			return nil, fmt.Errorf("%w: file %q: only top-level .rego and .yaml files", admin.ErrBadRequest, n)
		}
	}
	return a.Files, nil
}

func digest(files map[string]string) string {
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range files {
			if !yield(n) {
				return
			}
		}
	})
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00%s", n, len(files[n]), files[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkPolicy compiles, lints and tests a candidate and diffs it against
// the set in force.
func (s *Supervisor) checkPolicy(ctx context.Context, files map[string]string) PolicyCheck {
	r := PolicyCheck{Digest: digest(files)}
	fsys := fstest.MapFS{}
	for n, c := range files {
		fsys[n] = &fstest.MapFile{Data: []byte(c), Mode: 0o644}
	}
	r.Tests, _ = gateagent.PolicyTestResults(ctx, fsys)
	cand, err := gateagent.LoadPolicySetFS(ctx, fsys, config.Names)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Scripts = len(cand.Registry.Scripts)
	cur, err := gateagent.LoadPolicySet(ctx, s.policyDir(), config.Names)
	if err != nil {
		r.Error = fmt.Sprintf("the set in force does not load: %v", err)
		return r
	}
	if r.Changes, err = gateagent.DiffPolicySets(ctx, cur, cand, s.labels()); err != nil {
		r.Error = err.Error()
		return r
	}
	r.OK = true
	return r
}

func (s *Supervisor) versions() ([]int, error) {
	es, err := os.ReadDir(filepath.Join(s.policyRoot(), "versions"))
	if err != nil {
		return nil, err
	}
	var vs []int
	for _, e := range es {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			vs = append(vs, n)
		}
	}
	sort.Ints(vs)
	return vs, nil
}

func (s *Supervisor) policyState() (PolicyState, error) {
	var st PolicyState
	var err error
	if st.Versions, err = s.versions(); err != nil {
		return st, err
	}
	b, err := os.ReadFile(s.policyHistory())
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st.History); err != nil {
		return st, err
	}
	link, err := os.Readlink(s.activePolicy())
	if err != nil {
		return st, err
	}
	st.Active, err = strconv.Atoi(filepath.Base(link))
	return st, err
}

// activeModules returns the Rego of the set in force (for explain).
func (s *Supervisor) activeModules() map[string]string {
	fsys := os.DirFS(s.policyDir())
	names, _ := fs.Glob(fsys, "*.rego")
	m := map[string]string{}
	for _, n := range names {
		if b, err := fs.ReadFile(fsys, n); err == nil {
			m[n] = string(b)
		}
	}
	return m
}

// initPolicyVersions makes version 0 from the configured (or embedded)
// policy set on first start, so the gate agent always loads "active".
func (s *Supervisor) initPolicyVersions() error {
	if _, err := os.Lstat(s.activePolicy()); err == nil {
		return nil
	}
	src := s.sourcePolicy()
	files := map[string]string{}
	names, err := fs.Glob(src, "*")
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasSuffix(n, ".rego") || strings.HasSuffix(n, ".yaml") {
			b, err := fs.ReadFile(src, n)
			if err != nil {
				return fmt.Errorf("policy set: %w", err)
			}
			files[n] = string(b)
		}
	}
	if err := os.MkdirAll(filepath.Join(s.policyRoot(), "versions"), 0o755); err != nil {
		return fmt.Errorf("policy versions: %w", err)
	}
	if err := s.writeVersion(0, files); err != nil {
		return err
	}
	return s.point(0, true)
}

func (s *Supervisor) writeVersion(v int, files map[string]string) error {
	dir := filepath.Join(s.policyRoot(), "versions", strconv.Itoa(v))
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("policy version %d: %w", v, err)
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(tmp, n), []byte(c), 0o644); err != nil {
			return fmt.Errorf("policy version %d: %w", v, err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("policy version %d: %w", v, err)
	}
	return nil
}

// point makes version v the active one (an atomic symlink swap) and
// records it in the history (or, for a rollback, drops the newest entry).
func (s *Supervisor) point(v int, push bool) error {
	var hist []int
	if b, err := os.ReadFile(s.policyHistory()); err == nil {
		json.Unmarshal(b, &hist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if push {
		hist = append(hist, v)
	} else if len(hist) > 0 {
		hist = hist[:len(hist)-1]
	}
	tmpLink := s.activePolicy() + ".tmp"
	os.Remove(tmpLink)
	if err := os.Symlink(filepath.Join("versions", strconv.Itoa(v)), tmpLink); err != nil {
		return fmt.Errorf("activate policy %d: %w", v, err)
	}
	if err := os.Rename(tmpLink, s.activePolicy()); err != nil {
		return fmt.Errorf("activate policy %d: %w", v, err)
	}
	b, _ := json.Marshal(hist)
	if err := os.WriteFile(s.policyHistory()+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(s.policyHistory()+".tmp", s.policyHistory())
}

// switchMu serialises activations and rollbacks (one supervisor per
// process).
var switchMu sync.Mutex

// activate validates files once more, stores them as the next version,
// makes it active and tells the gate agent to load it.
func (s *Supervisor) activate(ctx context.Context, files map[string]string) (PolicyState, error) {
	switchMu.Lock()
	defer switchMu.Unlock()
	r := s.checkPolicy(ctx, files)
	if !r.OK {
		return PolicyState{}, fmt.Errorf("policy set refused; the old one stays in force: %s", r.Error)
	}
	vs, err := s.versions()
	if err != nil {
		return PolicyState{}, err
	}
	next := vs[len(vs)-1] + 1
	if err := s.writeVersion(next, files); err != nil {
		return PolicyState{}, err
	}
	if err := s.point(next, true); err != nil {
		return PolicyState{}, err
	}
	s.reloadGate()
	s.log.Info("policy activated", "version", next, "digest", r.Digest)
	return s.policyState()
}

// rollback re-activates the set that was in force before the current one.
func (s *Supervisor) rollback(_ context.Context) (PolicyState, error) {
	switchMu.Lock()
	defer switchMu.Unlock()
	st, err := s.policyState()
	if err != nil {
		return st, err
	}
	if len(st.History) < 2 {
		return st, fmt.Errorf("%w: no earlier policy set to roll back to", admin.ErrBadRequest)
	}
	prev := st.History[len(st.History)-2]
	if err := s.point(prev, false); err != nil {
		return st, err
	}
	s.reloadGate()
	s.log.Info("policy rolled back", "version", prev)
	return s.policyState()
}

func (s *Supervisor) reloadGate() {
	s.mu.Lock()
	pid := s.status.GatePid
	s.mu.Unlock()
	if pid > 0 {
		syscall.Kill(pid, syscall.SIGHUP)
	}
}

// shadow evaluates a candidate policy set beside the one in force on live
// calls, without enforcing it: it follows the gate agent's audit log from
// the moment it starts and decides every new call again with the
// candidate, keeping each call where the two disagree.
type shadow struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	report ShadowReport
}

// ShadowReport is what `e2sctl policy shadow-report` prints.
type ShadowReport struct {
	Digest        string            `json:"digest"`
	Started       time.Time         `json:"started"`
	Calls         int               `json:"calls"`
	Disagreements []ShadowDisagreed `json:"disagreements"`
	Dropped       int               `json:"dropped,omitempty"` // beyond the first maxShadow
	Error         string            `json:"error,omitempty"`
}

// ShadowDisagreed is one call the candidate would have decided otherwise.
type ShadowDisagreed struct {
	Time      time.Time         `json:"time"` // to the minute
	Caller    string            `json:"caller"`
	Script    string            `json:"script"`
	Active    gateagent.Verdict `json:"active"`
	Candidate gateagent.Verdict `json:"candidate"`
}

const maxShadow = 1000

// shadows holds the one running shadow evaluation.
type shadows struct {
	mu  sync.Mutex
	cur *shadow
}

func (ss *shadows) start(ctx context.Context, s *Supervisor, files map[string]string) (*ShadowReport, error) {
	r := s.checkPolicy(ctx, files)
	if !r.OK {
		return nil, fmt.Errorf("policy set refused: %s", r.Error)
	}
	fsys := fstest.MapFS{}
	for n, c := range files {
		fsys[n] = &fstest.MapFile{Data: []byte(c)}
	}
	cand, err := gateagent.LoadPolicySetFS(ctx, fsys, config.Names)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(s.cfg.DataDir, "audit", "audit.log")
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	sh := &shadow{cancel: cancel, done: make(chan struct{}), report: ShadowReport{Digest: r.Digest, Started: time.Now().UTC(), Disagreements: []ShadowDisagreed{}}}
	ss.stop()
	ss.mu.Lock()
	ss.cur = sh
	ss.mu.Unlock()
	labels := s.labels()
	go func() {
		defer close(sh.done)
		err := auditlog.Follow(sctx, path, st.Size(), func(rec auditlog.Record) {
			active, ok := gateagent.RecordedVerdict(rec.Reason, rec.Target)
			if !ok {
				return
			}
			v, err := gateagent.ShadowVerdict(sctx, cand, labels, rec.Caller, rec.Script, rec.User)
			sh.mu.Lock()
			defer sh.mu.Unlock()
			sh.report.Calls++
			if err != nil {
				v = gateagent.Verdict("error: " + err.Error())
			}
			if v == active {
				return
			}
			if len(sh.report.Disagreements) >= maxShadow {
				sh.report.Dropped++
				return
			}
			// A secadmin reads this without audit.read: which call was
			// decided differently, never whose (no req id, no user).
			sh.report.Disagreements = append(sh.report.Disagreements, ShadowDisagreed{Time: rec.Time.Truncate(time.Minute),
				Caller: rec.Caller, Script: rec.Script, Active: active, Candidate: v})
		})
		if err != nil {
			sh.mu.Lock()
			sh.report.Error = err.Error()
			sh.mu.Unlock()
		}
	}()
	return ss.report()
}

func (ss *shadows) report() (*ShadowReport, error) {
	ss.mu.Lock()
	sh := ss.cur
	ss.mu.Unlock()
	if sh == nil {
		return nil, fmt.Errorf("%w: no shadow policy; start one with e2sctl policy shadow DIR", admin.ErrBadRequest)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.report
	r.Disagreements = slices.Clone(r.Disagreements)
	return &r, nil
}

func (ss *shadows) stop() {
	ss.mu.Lock()
	sh := ss.cur
	ss.cur = nil
	ss.mu.Unlock()
	if sh != nil {
		sh.cancel()
		<-sh.done
	}
}

// startMetrics counts gate decisions and admin commands from the audit logs
// as they are written, and serves the metrics on a root-only socket and to
// the operator's `e2sctl metrics`. The returned channel closes when both
// followers and the server have stopped.
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
	size := func(p string) int64 {
		if st, err := os.Stat(p); err == nil {
			return st.Size()
		}
		return 0
	}
	var wg sync.WaitGroup
	follow := func(p string, fn func(auditlog.Record)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := auditlog.Follow(ctx, p, size(p), fn); err != nil {
				s.log.Warn("metrics: cannot follow audit log", "log", p, "error", err)
			}
		}()
	}
	follow(filepath.Join(auditDir, "audit.log"), func(r auditlog.Record) { met.Gate(r, time.Now()) })
	follow(filepath.Join(auditDir, "admin.log"), func(r auditlog.Record) {
		met.Admin(strings.TrimPrefix(r.Script, "e2sctl "), r.Decision)
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := met.Serve(ctx, filepath.Join(s.cfg.RunDir, "metrics.sock")); err != nil {
			s.log.Warn("metrics socket stopped", "error", err)
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
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
