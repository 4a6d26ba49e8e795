package lifecycle

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/e2sgate/e2sgate/internal/daemon/config"
	"github.com/e2sgate/e2sgate/policies"
)

// openStore opens a store on the embedded default set in a temp dir and
// counts the reloads it asks for.
func openStore(t *testing.T) (*Store, *atomic.Int32) {
	t.Helper()
	var reloads atomic.Int32
	dir := t.TempDir()
	s, err := Open(testConfig(dir, &reloads))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s, &reloads
}

func testConfig(dir string, reloads *atomic.Int32) Config {
	labels := map[string]string{}
	for n, c := range config.Default().Compartments.ByName() {
		labels[n] = c.Label
	}
	return Config{
		Root: filepath.Join(dir, "policy"), Source: policies.Default,
		Compartments: config.Names, Labels: labels,
		AuditLog: filepath.Join(dir, "audit.log"),
		Reload:   func() { reloads.Add(1) },
	}
}

// defaultFiles is the embedded set as a request carries it, with edits.
func defaultFiles(t *testing.T, edits map[string]func(string) string) map[string]string {
	t.Helper()
	files := map[string]string{}
	names, err := fs.Glob(policies.Default, "*")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := fs.ReadFile(policies.Default, n)
		if err != nil {
			t.Fatal(err)
		}
		files[n] = string(b)
	}
	for n, edit := range edits {
		files[n] = edit(files[n])
	}
	return files
}

// onlyPurchasingReadsCatalogue is a good change: outside may no longer call
// purchasing/catalogue.
func onlyPurchasingReadsCatalogue(t *testing.T) map[string]string {
	return defaultFiles(t, map[string]func(string) string{"registry.yaml": func(s string) string {
		return strings.Replace(s, "    handler: catalogue\n    methods: [GET]\n    callers: [outside]",
			"    handler: catalogue\n    methods: [GET]\n    callers: [purchasing]", 1)
	}})
}

var badSets = []struct {
	name  string
	edits map[string]func(string) string
	says  string
}{
	{"syntax error", map[string]func(string) string{"gate.rego": func(s string) string {
		return strings.Replace(s, "default decision :=", "default decision =:", 1)
	}}, "rego_parse_error"},
	{"failing test", map[string]func(string) string{"gate_test.rego": func(s string) string {
		return s + "\ntest_always_fails if {\n\tfalse\n}\n"
	}}, "test_always_fails"},
	{"unknown compartment", map[string]func(string) string{"registry.yaml": func(s string) string {
		return strings.Replace(s, "target: purchasing", "target: billing", 1)
	}}, "is not a compartment"},
}

func wantState(t *testing.T, s *Store, want State) {
	t.Helper()
	got, err := s.State()
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if got.Active != want.Active || !slices.Equal(got.History, want.History) || !slices.Equal(got.Versions, want.Versions) {
		t.Fatalf("state %+v, want %+v", got, want)
	}
}

func activeRegistry(t *testing.T, s *Store) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir(), "registry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestOpenMakesVersionZeroOnce(t *testing.T) {
	var reloads atomic.Int32
	dir := t.TempDir()
	cfg := testConfig(dir, &reloads)
	if got := Dir(cfg.Root, "/configured"); got != "/configured" {
		t.Fatalf("Dir before a first version = %q, want the fallback", got)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, s, State{Active: 0, History: []int{0}, Versions: []int{0}})
	if got := Dir(cfg.Root, "/configured"); got != s.Dir() {
		t.Fatalf("Dir after Open = %q, want the active version %q", got, s.Dir())
	}
	if _, ok := s.Modules()["gate.rego"]; !ok {
		t.Fatalf("Modules of the set in force lack gate.rego: %v", s.Modules())
	}
	if _, err := s.Activate(context.Background(), onlyPurchasingReadsCatalogue(t)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A restart keeps the set in force instead of making version 0 again.
	s, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantState(t, s, State{Active: 1, History: []int{0, 1}, Versions: []int{0, 1}})
}

func TestCheck(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	t.Run("good change", func(t *testing.T) {
		files := onlyPurchasingReadsCatalogue(t)
		r := s.Check(ctx, files)
		if !r.OK || r.Error != "" || r.Digest != Digest(files) || r.Scripts == 0 || len(r.Tests) == 0 {
			t.Fatalf("check: %+v", r)
		}
		found := false
		for _, c := range r.Changes {
			if c.Caller == "outside" && c.Script == "purchasing/catalogue" && c.Before == "allow (pol.allowed)" && c.After == "deny (pol.caller_not_permitted)" {
				found = true
			}
		}
		if !found {
			t.Fatalf("changes lack outside's lost catalogue: %+v", r.Changes)
		}
	})
	t.Run("same set changes nothing", func(t *testing.T) {
		if r := s.Check(ctx, defaultFiles(t, nil)); !r.OK || len(r.Changes) != 0 {
			t.Fatalf("check: %+v", r)
		}
	})
	for _, b := range badSets {
		t.Run("refused "+b.name, func(t *testing.T) {
			if r := s.Check(ctx, defaultFiles(t, b.edits)); r.OK || !strings.Contains(r.Error, b.says) {
				t.Fatalf("check: ok %v, error %q, want it to say %q", r.OK, r.Error, b.says)
			}
		})
	}
}

func TestActivateAndRollback(t *testing.T) {
	s, reloads := openStore(t)
	ctx := context.Background()
	before := activeRegistry(t, s)

	for _, b := range badSets {
		_, err := s.Activate(ctx, defaultFiles(t, b.edits))
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "the old one stays in force") || !strings.Contains(err.Error(), b.says) {
			t.Fatalf("activate %s: %v", b.name, err)
		}
	}
	wantState(t, s, State{Active: 0, History: []int{0}, Versions: []int{0}})
	if reloads.Load() != 0 || activeRegistry(t, s) != before {
		t.Fatalf("a refused set changed the set in force (%d reloads)", reloads.Load())
	}

	next := onlyPurchasingReadsCatalogue(t)
	st, err := s.Activate(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != 1 || reloads.Load() != 1 || activeRegistry(t, s) != next["registry.yaml"] {
		t.Fatalf("after activation: state %+v, %d reloads", st, reloads.Load())
	}
	wantState(t, s, State{Active: 1, History: []int{0, 1}, Versions: []int{0, 1}})

	st, err = s.Rollback(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != 0 || reloads.Load() != 2 || activeRegistry(t, s) != before {
		t.Fatalf("after rollback: state %+v, %d reloads", st, reloads.Load())
	}
	// The rolled-back version stays on disk; the history forgets it.
	wantState(t, s, State{Active: 0, History: []int{0}, Versions: []int{0, 1}})

	if _, err := s.Rollback(ctx); !errors.Is(err, ErrNoEarlier) {
		t.Fatalf("rollback past the first version: %v", err)
	}
	if reloads.Load() != 2 {
		t.Fatalf("a refused rollback reloaded the gate")
	}

	// The next activation gets a new number, not the rolled-back one's.
	if st, err := s.Activate(ctx, next); err != nil || st.Active != 2 {
		t.Fatalf("activate again: %+v %v", st, err)
	}
	wantState(t, s, State{Active: 2, History: []int{0, 2}, Versions: []int{0, 1, 2}})
}

// A proposal's basis changes with every activation and rollback, and a
// rollback's plan says what it would decide otherwise.
func TestBasisAndRollbackPlan(t *testing.T) {
	s, _ := openStore(t)
	ctx := context.Background()
	if _, _, _, err := s.RollbackPlan(ctx); !errors.Is(err, ErrNoEarlier) {
		t.Fatalf("plan with one version: %v", err)
	}
	b0, err := s.Basis()
	if err != nil || !strings.HasPrefix(b0, "active version 0 (digest ") || !strings.HasSuffix(b0, ", history [0])") {
		t.Fatalf("basis %q %v", b0, err)
	}
	if _, err := s.Activate(ctx, onlyPurchasingReadsCatalogue(t)); err != nil {
		t.Fatal(err)
	}
	b1, _ := s.Basis()
	from, to, changes, err := s.RollbackPlan(ctx)
	if err != nil || from != 1 || to != 0 || len(changes) != 2 || changes[0].After != "allow (pol.allowed)" || b1 == b0 {
		t.Fatalf("plan %d→%d %+v %v; basis %q", from, to, changes, err, b1)
	}
	want := "2 calls change\n  outside calls purchasing/catalogue: deny (pol.caller_not_permitted) → allow (pol.allowed)\n" +
		"  purchasing calls purchasing/catalogue: allow (pol.allowed) → deny (pol.caller_not_permitted)"
	if got := changeList(changes); got != want {
		t.Fatalf("changeList = %q, want %q", got, want)
	}
	if _, err := s.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Back to the same set and history is the same state again.
	if b2, _ := s.Basis(); b2 != b0 {
		t.Fatalf("basis after rollback %q, want %q", b2, b0)
	}
}
