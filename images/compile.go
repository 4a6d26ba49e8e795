package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// CompileStatic builds the Go package pkg (run from the module root) into a
// static binary at out: CGO_ENABLED=0, no VCS stamping, trimmed paths.
func CompileStatic(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("compile %s: %w\n%s", pkg, err, b)
	}
	return nil
}
