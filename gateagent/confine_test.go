package gateagent

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// After confineSelf the gate agent can write its audit directory and read
// its policy tree, and nothing else: the check runs in a child process,
// since Landlock cannot be undone.
func TestConfineSelf(t *testing.T) {
	if dir := os.Getenv("E2S_CONFINE_CHILD"); dir != "" {
		confineChild(t, dir)
		return
	}
	dir := t.TempDir()
	for _, d := range []string{"audit", "policy/versions/1", "elsewhere"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "policy/versions/1/gate.rego"), []byte("package x\n"), 0o644)
	os.Symlink("versions/1", filepath.Join(dir, "policy/active"))
	os.WriteFile(filepath.Join(dir, "elsewhere/secret"), []byte("s"), 0o600)
	cmd := exec.Command(os.Args[0], "-test.run=^TestConfineSelf$", "-test.v")
	cmd.Env = append(os.Environ(), "E2S_CONFINE_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestConfineSelf") {
		t.Fatalf("confined child: %v\n%s", err, out)
	}
}

func confineChild(t *testing.T, dir string) {
	cfg := Config{AuditLog: filepath.Join(dir, "audit/audit.log"), PolicyDir: filepath.Join(dir, "policy/active")}
	if err := confineSelf(slog.New(slog.NewTextHandler(io.Discard, nil)), cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.AuditLog, []byte("ok\n"), 0o600); err != nil {
		t.Errorf("audit dir not writable: %v", err)
	}
	if _, err := os.ReadFile(filepath.Join(cfg.PolicyDir, "gate.rego")); err != nil {
		t.Errorf("active policy not readable: %v", err)
	}
	for _, p := range []string{filepath.Join(dir, "elsewhere/secret"), "/etc/passwd"} {
		if _, err := os.ReadFile(p); !errors.Is(err, os.ErrPermission) {
			t.Errorf("read %s: %v, want permission denied", p, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "policy/versions/1/gate.rego"), []byte("tampered"), 0o644); !errors.Is(err, os.ErrPermission) {
		t.Errorf("policy tree writable: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "elsewhere/new"), nil, 0o600); !errors.Is(err, os.ErrPermission) {
		t.Errorf("wrote outside the audit dir: %v", err)
	}
}
