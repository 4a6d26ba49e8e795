package testutil

import (
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a test ended instead of
// ending it.
type recorder struct {
	testing.TB
	failed, skipped string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Fatalf(format string, a ...any) { r.failed = format }
func (r *recorder) Skipf(format string, a ...any)  { r.skipped = format }

func TestRequires(t *testing.T) {
	tests := []struct {
		name, tool string
		strict     bool
		want       string // "", "fail", "skip"
	}{
		{"present", "sh", true, ""},
		{"missing under make test", "no-such-tool-e2s", true, "fail"},
		{"missing in a plain go test", "no-such-tool-e2s", false, "skip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CI", "")
			t.Setenv(EnvStrict, map[bool]string{true: "1"}[tt.strict])
			r := &recorder{TB: t}
			p := Requires(r, tt.tool)
			got := ""
			switch {
			case r.failed != "":
				got = "fail"
			case r.skipped != "":
				got = "skip"
			}
			if got != tt.want {
				t.Fatalf("Requires(%q) strict=%v ended %q, want %q", tt.tool, tt.strict, got, tt.want)
			}
			if got == "" && !strings.HasSuffix(p, "/"+tt.tool) {
				t.Fatalf("path %q", p)
			}
		})
	}
}
