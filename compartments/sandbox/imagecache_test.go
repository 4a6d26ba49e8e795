package sandbox

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/e2sgate/e2sgate/images"
)

// TestBuildImageSkipsOnlyUnchangedInputs: a second Start with the same
// program does not rebuild the image (the stamp Build would rewrite stays
// gone); a program rewritten in place, even with its mtime put back, is
// built into the image again.
func TestBuildImageSkipsOnlyUnchangedInputs(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "prog")
	orig, err := os.ReadFile(probe(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, orig, 0o755); err != nil {
		t.Fatal(err)
	}
	imgs := filepath.Join(dir, "images")
	rootfs, err := buildImage(imgs, "purchasing", bin)
	if err != nil {
		t.Fatal(err)
	}
	stamp := filepath.Join(imgs, "purchasing", "stamp")
	if err := os.Remove(stamp); err != nil {
		t.Fatal(err)
	}
	if _, err := buildImage(imgs, "purchasing", bin); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stamp); err == nil {
		t.Error("unchanged program: image rebuilt")
	}

	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	changed := append(bytes.Clone(orig), 0) // still a static ELF
	if err := os.WriteFile(bin, changed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(bin, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, err := buildImage(imgs, "purchasing", bin); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(rootfs, images.BinaryPath("purchasing")))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, changed) {
		t.Error("program rewritten with its old mtime: image not rebuilt")
	}
}
