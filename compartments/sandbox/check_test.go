package sandbox

import (
	"errors"
	"testing"
)

// TestCheck: on the CI kernel every required layer is there. A layer that
// is missing fails the test by name, which is the point: the supervisor
// would refuse to start.
func TestCheck(t *testing.T) {
	requireRoot(t)
	rep := Check()
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
	tests := []struct{ name, bin string }{
		{"missing binary", "/nonexistent/runc"},
		{"not runc", "/bin/true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := checkRunc(tt.bin); err == nil {
				t.Errorf("checkRunc(%s) = nil", tt.bin)
			}
		})
	}
}
