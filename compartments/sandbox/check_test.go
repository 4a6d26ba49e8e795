package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// TestCheck: on the CI kernel every required layer is there. A layer that
// is missing fails the test by name, which is the point: the supervisor
// would refuse to start.
func TestCheck(t *testing.T) {
	requireRoot(t)
	rep := (&Runc{Binary: pinnedRunc(t)}).Check()
	want := []string{LayerNamespaces, LayerUserns, LayerRunc, LayerSeccomp, LayerLandlock, LayerCgroups, LayerNftables, LayerCgroupBPF}
	if len(rep) != len(want) {
		t.Fatalf("Check reported %d layers, want %d", len(rep), len(want))
	}
	for i, l := range rep {
		t.Run(l.Layer, func(t *testing.T) {
			if l.Layer != want[i] {
				t.Errorf("layer %d = %s, want %s", i, l.Layer, want[i])
			}
			if l.Err != nil {
				t.Errorf("%v", l.Err)
			}
			t.Logf("%s: %s", l.Layer, l.Detail)
		})
	}
	if err := rep.Err(); err != nil {
		t.Errorf("Report.Err = %v", err)
	}
}

func TestReportErrNamesMissingLayers(t *testing.T) {
	rep := Report{
		check("seccomp", func() (string, error) { return "", errors.New("no filter") }),
		check("landlock", func() (string, error) { return "abi=7", nil }),
	}
	err := rep.Err()
	if !errors.Is(err, ErrLayerMissing) {
		t.Fatalf("Err = %v, want ErrLayerMissing", err)
	}
	if got := err.Error(); got != "sandbox: confinement layer missing: seccomp: no filter" {
		t.Errorf("Err = %q", got)
	}
}

func TestCheckRuncRejectsOldOrMissing(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "runc")
	if err := os.WriteFile(old, []byte("#!/bin/sh\necho 'runc version 1.1.5+ds1'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, bin string }{
		{"missing binary", "/nonexistent/runc"},
		{"not runc", "/bin/true"},
		{"not the pinned release", old},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := checkRunc(tt.bin); !errors.Is(err, ErrNoRunc) {
				t.Errorf("checkRunc(%s) = %v, want ErrNoRunc", tt.bin, err)
			}
		})
	}
}

// TestRuncNeverFromPath: with no runc beside the program and none given,
// the runtime refuses instead of running one it finds on PATH.
func TestRuncNeverFromPath(t *testing.T) {
	for _, bin := range []string{"runc", "bin/runc", "/nonexistent/runc"} {
		r := &Runc{Binary: bin}
		if _, err := r.runc(); !errors.Is(err, ErrNoRunc) {
			t.Errorf("Binary %q: runc() = %v, want ErrNoRunc", bin, err)
		}
		if _, err := r.Start(context.Background(), Spec{Name: "x"}); !errors.Is(err, ErrNoRunc) {
			t.Errorf("Binary %q: Start = %v, want ErrNoRunc", bin, err)
		}
	}
	if _, err := PinnedRunc(t.TempDir()); !errors.Is(err, ErrNoRunc) || !strings.Contains(err.Error(), "make build") {
		t.Errorf("PinnedRunc(empty dir) = %v, want ErrNoRunc saying to run make build", err)
	}
}

// TestRuncVersionIsPinned: RuncVersion is the version go.mod's tool
// directive pins, so `make build`, Check and status.json agree.
func TestRuncVersionIsPinned(t *testing.T) {
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(f.Tool, func(tl *modfile.Tool) bool { return tl.Path == "github.com/opencontainers/runc" }) {
		t.Error("go.mod has no tool directive for github.com/opencontainers/runc")
	}
	for _, r := range f.Require {
		if r.Mod.Path == "github.com/opencontainers/runc" {
			if r.Mod.Version != "v"+RuncVersion {
				t.Errorf("go.mod pins runc %s, RuncVersion is %s", r.Mod.Version, RuncVersion)
			}
			return
		}
	}
	t.Error("go.mod does not require github.com/opencontainers/runc")
}
