// Package lifecycle keeps the policy sets the gate agent enforces: every
// version ever activated, the one in force, and the order of activations,
// under one root directory:
//
//	ROOT/versions/N/   every set ever activated, N = 0, 1, ...
//	ROOT/active        symlink to the set in force (swapped atomically)
//	ROOT/history       the order of activations, for rollback
//
// The gate agent always loads ROOT/active. A candidate set is checked
// (compiled, linted, its tests run, diffed against the set in force) before
// it is stored as the next version and made active; the caller's Reload then
// tells the gate agent, which swaps the whole set at once. A candidate may
// also be evaluated in the shadow of the set in force on live calls (see
// shadow.go). Register wires all of it to the admin socket's policy.*
// commands.
package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing/fstest"

	"github.com/e2sgate/e2sgate/gateagent"
)

// Config is what a Store needs.
type Config struct {
	Root         string            // the directory the versions live under
	Source       fs.FS             // the set version 0 is made from on first start
	Compartments []string          // the compartments a registry may name
	Labels       map[string]string // compartment → label, for diffs and shadow decisions
	AuditLog     string            // the gate agent's audit log, which a shadow follows
	Reload       func()            // tells the gate agent to load the active set
	Log          *slog.Logger
}

// Store holds the policy versions and the one shadow evaluation.
type Store struct {
	cfg      Config
	switchMu sync.Mutex // serialises activations and rollbacks
	shadows  shadows
}

// CheckReport is the report of `e2sctl policy check`.
type CheckReport struct {
	OK      bool                   `json:"ok"`
	Error   string                 `json:"error,omitempty"`
	Digest  string                 `json:"digest"`
	Scripts int                    `json:"scripts"`
	Tests   []gateagent.TestResult `json:"tests"`
	Changes []gateagent.Change     `json:"changes"`
}

// State is what `e2sctl policy show` prints.
type State struct {
	Active   int   `json:"active"`
	History  []int `json:"history"`
	Versions []int `json:"versions"`
}

// Dir is the directory the gate agent loads its policy set from: the active
// version under root, or fallback before a first version exists.
func Dir(root, fallback string) string {
	if _, err := os.Stat(activePath(root)); err == nil {
		return activePath(root)
	}
	return fallback
}

func activePath(root string) string { return filepath.Join(root, "active") }

// Open makes version 0 from cfg.Source on first start, so that a set is
// always active, and returns the store.
func Open(cfg Config) (*Store, error) {
	if cfg.Reload == nil {
		cfg.Reload = func() {}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Store{cfg: cfg}
	if err := s.initVersions(); err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops a running shadow evaluation.
func (s *Store) Close() { s.shadows.stop() }

func (s *Store) active() string  { return activePath(s.cfg.Root) }
func (s *Store) history() string { return filepath.Join(s.cfg.Root, "history") }
func (s *Store) versionsDir() string {
	return filepath.Join(s.cfg.Root, "versions")
}

// Dir is the directory of the set in force.
func (s *Store) Dir() string { return s.active() }

// Modules returns the Rego of the set in force (for explain).
func (s *Store) Modules() map[string]string {
	fsys := os.DirFS(s.active())
	names, _ := fs.Glob(fsys, "*.rego")
	m := map[string]string{}
	for _, n := range names {
		if b, err := fs.ReadFile(fsys, n); err == nil {
			m[n] = string(b)
		}
	}
	return m
}

// Digest identifies a policy set by its file names and contents.
func Digest(files map[string]string) string {
	h := sha256.New()
	for _, n := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "%s\x00%d\x00%s", n, len(files[n]), files[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func mapFS(files map[string]string) fstest.MapFS {
	fsys := fstest.MapFS{}
	for n, c := range files {
		fsys[n] = &fstest.MapFile{Data: []byte(c), Mode: 0o644}
	}
	return fsys
}

// Check compiles, lints and tests a candidate and diffs it against the set
// in force.
func (s *Store) Check(ctx context.Context, files map[string]string) CheckReport {
	r := CheckReport{Digest: Digest(files)}
	fsys := mapFS(files)
	r.Tests, _ = gateagent.PolicyTestResults(ctx, fsys)
	cand, err := gateagent.LoadPolicySetFS(ctx, fsys, s.cfg.Compartments)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Scripts = len(cand.Registry.Scripts)
	cur, err := gateagent.LoadPolicySet(ctx, s.active(), s.cfg.Compartments)
	if err != nil {
		r.Error = fmt.Sprintf("the set in force does not load: %v", err)
		return r
	}
	if r.Changes, err = gateagent.DiffPolicySets(ctx, cur, cand, s.cfg.Labels); err != nil {
		r.Error = err.Error()
		return r
	}
	r.OK = true
	return r
}

// State reports the versions, the history and the version in force.
func (s *Store) State() (State, error) {
	var st State
	var err error
	if st.Versions, err = s.versions(); err != nil {
		return st, err
	}
	b, err := os.ReadFile(s.history())
	if err != nil {
		return st, fmt.Errorf("policy history: %w", err)
	}
	if err := json.Unmarshal(b, &st.History); err != nil {
		return st, fmt.Errorf("policy history: %w", err)
	}
	link, err := os.Readlink(s.active())
	if err != nil {
		return st, fmt.Errorf("active policy: %w", err)
	}
	if st.Active, err = strconv.Atoi(filepath.Base(link)); err != nil {
		return st, fmt.Errorf("active policy %s: %w", link, err)
	}
	return st, nil
}

// Activate validates files once more, stores them as the next version,
// makes it active and tells the gate agent to load it. A refused set
// leaves the set in force as it is.
func (s *Store) Activate(ctx context.Context, files map[string]string) (State, error) {
	s.switchMu.Lock()
	defer s.switchMu.Unlock()
	r := s.Check(ctx, files)
	if !r.OK {
		return State{}, fmt.Errorf("%w; the old one stays in force: %s", ErrRefused, r.Error)
	}
	vs, err := s.versions()
	if err != nil {
		return State{}, err
	}
	next := vs[len(vs)-1] + 1
	if err := s.writeVersion(next, files); err != nil {
		return State{}, err
	}
	if err := s.point(next, true); err != nil {
		return State{}, err
	}
	s.cfg.Reload()
	s.cfg.Log.Info("policy activated", "version", next, "digest", r.Digest)
	return s.State()
}

// Basis names the state an activation or a rollback is computed against:
// the version in force, its digest and the history. A proposal records it
// and is carried out only while it holds.
func (s *Store) Basis() (string, error) {
	st, err := s.State()
	if err != nil {
		return "", err
	}
	files, err := readSet(s.active())
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("active version %d (digest %s, history %v)", st.Active, Digest(files)[:16], st.History), nil
}

// readSet reads the top-level .rego and .yaml files of a stored version.
func readSet(dir string) (map[string]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policy set: %w", err)
	}
	files := map[string]string{}
	for _, e := range es {
		if n := e.Name(); e.Type().IsRegular() && (strings.HasSuffix(n, ".rego") || strings.HasSuffix(n, ".yaml")) {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				return nil, fmt.Errorf("policy set: %w", err)
			}
			files[n] = string(b)
		}
	}
	return files, nil
}

// RollbackPlan is what a rollback would do now: from the version in force
// to the one before it, and the calls that would then be decided
// otherwise.
func (s *Store) RollbackPlan(ctx context.Context) (from, to int, changes []gateagent.Change, err error) {
	st, err := s.State()
	if err != nil {
		return 0, 0, nil, err
	}
	if len(st.History) < 2 {
		return 0, 0, nil, ErrNoEarlier
	}
	from, to = st.History[len(st.History)-1], st.History[len(st.History)-2]
	cur, err := gateagent.LoadPolicySet(ctx, s.active(), s.cfg.Compartments)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("the set in force does not load: %w", err)
	}
	prev, err := gateagent.LoadPolicySet(ctx, filepath.Join(s.versionsDir(), strconv.Itoa(to)), s.cfg.Compartments)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("version %d does not load: %w", to, err)
	}
	changes, err = gateagent.DiffPolicySets(ctx, cur, prev, s.cfg.Labels)
	return from, to, changes, err
}

// Rollback re-activates the set that was in force before the current one.
func (s *Store) Rollback(_ context.Context) (State, error) {
	s.switchMu.Lock()
	defer s.switchMu.Unlock()
	st, err := s.State()
	if err != nil {
		return st, err
	}
	if len(st.History) < 2 {
		return st, ErrNoEarlier
	}
	prev := st.History[len(st.History)-2]
	if err := s.point(prev, false); err != nil {
		return st, err
	}
	s.cfg.Reload()
	s.cfg.Log.Info("policy rolled back", "version", prev)
	return s.State()
}

func (s *Store) versions() ([]int, error) {
	es, err := os.ReadDir(s.versionsDir())
	if err != nil {
		return nil, fmt.Errorf("policy versions: %w", err)
	}
	var vs []int
	for _, e := range es {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			vs = append(vs, n)
		}
	}
	slices.Sort(vs)
	return vs, nil
}

// initVersions makes version 0 from the source set unless a set is active.
func (s *Store) initVersions() error {
	if _, err := os.Lstat(s.active()); err == nil {
		return nil
	}
	src := s.cfg.Source
	files := map[string]string{}
	names, err := fs.Glob(src, "*")
	if err != nil {
		return fmt.Errorf("policy set: %w", err)
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
	if err := os.MkdirAll(s.versionsDir(), 0o755); err != nil {
		return fmt.Errorf("policy versions: %w", err)
	}
	if err := s.writeVersion(0, files); err != nil {
		return err
	}
	return s.point(0, true)
}

func (s *Store) writeVersion(v int, files map[string]string) error {
	dir := filepath.Join(s.versionsDir(), strconv.Itoa(v))
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
func (s *Store) point(v int, push bool) error {
	var hist []int
	if b, err := os.ReadFile(s.history()); err == nil {
		json.Unmarshal(b, &hist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("policy history: %w", err)
	}
	if push {
		hist = append(hist, v)
	} else if len(hist) > 0 {
		hist = hist[:len(hist)-1]
	}
	tmpLink := s.active() + ".tmp"
	os.Remove(tmpLink)
	if err := os.Symlink(filepath.Join("versions", strconv.Itoa(v)), tmpLink); err != nil {
		return fmt.Errorf("activate policy %d: %w", v, err)
	}
	if err := os.Rename(tmpLink, s.active()); err != nil {
		return fmt.Errorf("activate policy %d: %w", v, err)
	}
	b, _ := json.Marshal(hist)
	if err := os.WriteFile(s.history()+".tmp", b, 0o644); err != nil {
		return fmt.Errorf("policy history: %w", err)
	}
	if err := os.Rename(s.history()+".tmp", s.history()); err != nil {
		return fmt.Errorf("policy history: %w", err)
	}
	return nil
}
