// Package images builds each compartment's minimal root filesystem: its one
// static binary, its config, the CA roots, a hosts file and empty mount
// points. Nothing else: no shell, no libc, no loader, no passwd.
//
// Layout of DIR/NAME/rootfs:
//
//	/bin/NAME                            the compartment program (0755)
//	/etc/e2sgate/config                  its config section, when given
//	/etc/ssl/certs/ca-certificates.crt   CA roots
//	/etc/hosts                           localhost only, so Go's resolver
//	                                     never asks DNS for "localhost"
//	/proc /dev /tmp /run                 empty mount points
//
// Everything is owned by root and world-readable, never writable: inside the
// sandbox's user namespace root is unmapped, so the compartment's uid can
// read and execute the image but change nothing even if the mount were
// writable.
package images

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Paths inside every image.
const (
	ConfigPath = "/etc/e2sgate/config"
	CARoots    = "/etc/ssl/certs/ca-certificates.crt"
)

// MountPoints are the empty directories every image has.
var MountPoints = []string{"/proc", "/dev", "/tmp", "/run"}

// HostCARoots is where Debian's ca-certificates package keeps the bundle.
var HostCARoots = "/etc/ssl/certs/ca-certificates.crt"

// layoutVersion changes whenever the layout above changes, so that Build
// rebuilds images made by an older version.
const layoutVersion = "e2sgate-image-v1"

const hostsFile = "127.0.0.1\tlocalhost\n::1\tlocalhost\n"

// BinaryPath is where the compartment's program lives inside its image.
func BinaryPath(name string) string { return "/bin/" + name }

// Image describes one compartment image.
type Image struct {
	Name   string // compartment name, e.g. "purchasing"
	Binary string // host path of its static program
	Config string // host path of its config section; "" for none
}

// Build makes (or reuses) the image of compartment name from the static
// binary at host path binary, under dir/name/rootfs, and returns that
// rootfs path. It is idempotent and returns at once when the image is up to
// date (one hash of the inputs).
func Build(dir, name, binary string) (rootfs string, err error) {
	return BuildImage(dir, Image{Name: name, Binary: binary})
}

// BuildImage is Build with a config file.
func BuildImage(dir string, img Image) (rootfs string, err error) {
	if img.Name == "" || img.Name != filepath.Base(img.Name) || strings.HasPrefix(img.Name, ".") {
		return "", fmt.Errorf("%w: %q", ErrBadName, img.Name)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	if err := checkStatic(img.Binary); err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	sum, err := inputsDigest(img)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	base := filepath.Join(dir, img.Name)
	rootfs = filepath.Join(base, "rootfs")
	stamp := filepath.Join(base, "stamp")
	if old, err := os.ReadFile(stamp); err == nil && string(old) == sum {
		if _, err := os.Stat(filepath.Join(rootfs, BinaryPath(img.Name))); err == nil {
			return rootfs, nil
		}
	}
	// Everything on the way to the rootfs must be traversable by the
	// compartment's unprivileged uid.
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	if err := chmodPath(dir, base); err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	tmp, err := os.MkdirTemp(base, "rootfs.new-")
	if err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	defer os.RemoveAll(tmp)
	if err := populate(tmp, img); err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	// Swap the new tree in. A compartment still running from the old tree
	// keeps its mount; the old directory is removed afterwards.
	old := rootfs + ".old"
	_ = os.RemoveAll(old)
	if err := os.Rename(rootfs, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	if err := os.Rename(tmp, rootfs); err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	_ = os.RemoveAll(old)
	if err := os.WriteFile(stamp, []byte(sum), 0o644); err != nil {
		return "", fmt.Errorf("image %s: %w", img.Name, err)
	}
	return rootfs, nil
}

func populate(root string, img Image) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	dirs := append([]string{"/bin", "/etc/e2sgate", "/etc/ssl/certs"}, MountPoints...)
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	// MkdirAll honours the umask; make the modes exact.
	if err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chmod(p, 0o755)
	}); err != nil {
		return err
	}
	if err := copyFile(img.Binary, filepath.Join(root, BinaryPath(img.Name)), 0o755); err != nil {
		return err
	}
	if err := copyFile(HostCARoots, filepath.Join(root, CARoots), 0o644); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNoCARoots, HostCARoots)
		}
		return err
	}
	if img.Config != "" {
		if err := copyFile(img.Config, filepath.Join(root, ConfigPath), 0o644); err != nil {
			return err
		}
	}
	return writeFile(filepath.Join(root, "/etc/hosts"), []byte(hostsFile), 0o644)
}

// inputsDigest hashes everything an image is made of.
func inputsDigest(img Image) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", layoutVersion, img.Name)
	for _, p := range []string{img.Binary, HostCARoots, img.Config} {
		if p == "" {
			io.WriteString(h, "-\x00")
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		io.WriteString(h, "\x00")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkStatic refuses binaries that need a program interpreter or shared
// libraries.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s has a program interpreter", ErrNotStatic, path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err == nil && len(libs) > 0 {
		return fmt.Errorf("%w: %s needs %v", ErrNotStatic, path, libs)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeFile(dst, b, mode)
}

func writeFile(dst string, b []byte, mode os.FileMode) error {
	if err := os.WriteFile(dst, b, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode) // exact, whatever the umask
}

// chmodPath makes every directory from top down to leaf traversable (o+x),
// without widening anything else.
func chmodPath(top, leaf string) error {
	for p := leaf; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
		if p == top || p == filepath.Dir(p) {
			return nil
		}
	}
}

// Files lists every path in rootfs, directories with a trailing slash (tests
// use it to prove an image holds nothing else).
func Files(rootfs string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(rootfs, p)
		if rel == "." {
			return nil
		}
		suffix := ""
		if d.IsDir() {
			suffix = "/"
		}
		out = append(out, "/"+rel+suffix)
		return nil
	})
	return out, err
}
