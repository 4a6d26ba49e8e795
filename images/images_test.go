package images

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// buildHello compiles a tiny static program for the tests.
func buildHello(t *testing.T, cgo bool) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\nimport \"os/user\"\nfunc main(){ _, _ = user.Current() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hello")
	env := "CGO_ENABLED=0"
	if cgo {
		env = "CGO_ENABLED=1"
	}
	cmd := execCommand(context.Background(), dir, env, "go", "build", "-o", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build hello: %v\n%s", err, b)
	}
	return out
}

func TestBuildLayout(t *testing.T) {
	bin := buildHello(t, false)
	dir := t.TempDir()
	rootfs, err := Build(dir, "purchasing", bin)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Files(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/bin/", "/bin/purchasing", "/dev/", "/etc/", "/etc/e2sgate/", "/etc/hosts",
		"/etc/ssl/", "/etc/ssl/certs/", "/etc/ssl/certs/ca-certificates.crt",
		"/proc/", "/run/", "/tmp/",
	}
	if !slices.Equal(got, want) {
		t.Errorf("image files = %q, want %q", got, want)
	}
	tests := []struct {
		path string
		mode os.FileMode
	}{
		{"/", 0o755 | os.ModeDir},
		{"/bin/purchasing", 0o755},
		{"/etc/ssl/certs/ca-certificates.crt", 0o644},
		{"/tmp", 0o755 | os.ModeDir},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			fi, err := os.Stat(filepath.Join(rootfs, tt.path))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tt.mode {
				t.Errorf("mode = %v, want %v", fi.Mode(), tt.mode)
			}
		})
	}
	for _, p := range []string{"/bin/sh", "/lib", "/usr", "/etc/passwd"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err == nil {
			t.Errorf("image has %s", p)
		}
	}
}

func TestBuildIdempotentAndFast(t *testing.T) {
	bin := buildHello(t, false)
	dir := t.TempDir()
	first, err := Build(dir, "payment", bin)
	if err != nil {
		t.Fatal(err)
	}
	fi1, _ := os.Stat(filepath.Join(first, "bin/payment"))
	start := time.Now()
	second, err := Build(dir, "payment", bin)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	fi2, _ := os.Stat(filepath.Join(second, "bin/payment"))
	if first != second || !os.SameFile(fi1, fi2) {
		t.Errorf("second Build rebuilt the image (%s vs %s)", first, second)
	}
	if elapsed > 500*time.Millisecond {
		t.Errorf("up-to-date Build took %v", elapsed)
	}
	// A changed input (here: a config) is picked up.
	cfg := filepath.Join(t.TempDir(), "payment.toml")
	if err := os.WriteFile(cfg, []byte("version = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	third, err := BuildImage(dir, Image{Name: "payment", Binary: bin, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(third, ConfigPath))
	if err != nil || string(b) != "version = 1\n" {
		t.Errorf("config in image = %q, %v", b, err)
	}
	if entries, _ := os.ReadDir(dir + "/payment"); len(entries) != 2 {
		t.Errorf("leftovers next to the rootfs: %v", entries)
	}
}

func TestBuildRejects(t *testing.T) {
	static := buildHello(t, false)
	tests := []struct {
		name, comp, bin string
		want            error
	}{
		{"dynamic binary", "x", buildHello(t, true), ErrNotStatic},
		{"path in name", "../x", static, ErrBadName},
		{"hidden name", ".x", static, ErrBadName},
		{"empty name", "", static, ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Build(t.TempDir(), tt.comp, tt.bin); !errors.Is(err, tt.want) {
				t.Errorf("Build = %v, want %v", err, tt.want)
			}
		})
	}
}

func execCommand(ctx context.Context, dir, env string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env)
	return cmd
}
