package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/internal/client"
)

func run1(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// TestFirstSteps: init writes a configuration keygen can use at once,
// and each step says what comes next.
func TestFirstSteps(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "e2s.yaml")
	t.Setenv("E2S_PASSWORD", "")
	_, _, err := run1(t, "-config", cfg, "keygen")
	if !errors.Is(err, client.ErrConfig) || !strings.Contains(Hint(err), "e2s init") {
		t.Fatalf("keygen before init: %v (hint %q)", err, Hint(err))
	}
	out, _, err := run1(t, "-config", cfg, "init", "-label", "acme-buyer")
	if err != nil || !strings.Contains(out, "export E2S_PASSWORD=") || !strings.Contains(out, "next: 'e2s keygen'") {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if _, _, err := run1(t, "-config", cfg, "init"); !errors.Is(err, client.ErrConfigExists) || Hint(err) == "" {
		t.Fatalf("init again: %v", err)
	}
	_, _, err = run1(t, "-config", cfg, "keygen", "-type", "ecdsa-p256")
	if !errors.Is(err, client.ErrNoSecret) || !strings.Contains(Hint(err), "E2S_PASSWORD") {
		t.Fatalf("keygen without password: %v (hint %q)", err, Hint(err))
	}
	t.Setenv("E2S_PASSWORD", "secret")
	out, _, err = run1(t, "-config", cfg, "keygen", "-type", "ecdsa-p256")
	if err != nil || !strings.Contains(out, "generated acme-buyer (ecdsa-p256)") {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	out, _, err = run1(t, "keystore", "list", "-config", cfg)
	if err != nil || !strings.Contains(out, "acme-buyer *") {
		t.Fatalf("keystore list: %v\n%s", err, out)
	}
}

func TestUsage(t *testing.T) {
	out, _, err := run1(t, "help")
	if err != nil || !strings.Contains(out, "e2s init") || !strings.Contains(out, "e2s buy -url URL") || strings.Contains(out, ".go") {
		t.Fatalf("help: %v\n%s", err, out)
	}
	_, stderr, err := run1(t, "buy", "-h")
	if err != nil || !strings.Contains(stderr, "-cacert") {
		t.Fatalf("buy -h: %v\n%s", err, stderr)
	}
	for _, args := range [][]string{{}, {"nonsense"}, {"-nonsense"}, {"buy", "-list"}, {"buy", "-url", "https://x", "-list", "-order", "x"}} {
		_, _, err := run1(t, args...)
		var stderr bytes.Buffer
		if code := Report(&stderr, err); code != 2 || !strings.Contains(stderr.String(), "e2s: next: ") {
			t.Errorf("%q: exit %d\n%s", args, code, stderr.String())
		}
	}
	if Report(&bytes.Buffer{}, nil) != 0 {
		t.Error("no error, exit status not 0")
	}
}

// TestProgressOnlyOnTerminal: progress is off for a buffer, a file, a
// pipe, and with -q; on for a terminal (when the test has one).
func TestProgressOnlyOnTerminal(t *testing.T) {
	var buf bytes.Buffer
	if (&env{stderr: &buf}).progress("open", false) != nil {
		t.Fatal("progress to a buffer")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if (&env{stderr: f}).progress("open", false) != nil {
		t.Fatal("progress to a file")
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer tty.Close()
		if (&env{stderr: tty}).progress("open", false) == nil {
			t.Fatal("no progress on a terminal")
		}
		if (&env{stderr: tty}).progress("open", true) != nil {
			t.Fatal("progress on a terminal with -q")
		}
	}
}

// TestParseSize: -max-size takes bytes with K, M, G or T.
func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "64G": 64 << 30, "512M": 512 << 20, "2k": 2048, "1T": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "G", "-1", "0", "1.5G", "9999999999T"} {
		if _, err := parseSize(bad); !errors.Is(err, client.ErrUsage) {
			t.Errorf("parseSize(%q): %v, want a usage error", bad, err)
		}
	}
}
