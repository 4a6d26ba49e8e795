package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/e2sgate/e2sgate/images"
)

// images.Build hashes the compartment's program and the CA roots on every
// call to see whether the image is current: about 12 ms of each start (the
// benchmark's probe; more for larger programs). builtImages remembers,
// per rootfs, the identity of those inputs when it was last built or
// checked, and Start skips the rebuild while they have not changed.
//
// The identity includes the inode's ctime, which no caller of utimes(2)
// can set back: a program replaced or written in place since (even with
// its old size and mtime restored) changes it, and the image is checked
// again. The image itself is as trusted as before: Build never re-read it.
var builtImages = struct {
	sync.Mutex
	m map[string]string // rootfs -> inputsIdentity
}{m: map[string]string{}}

// inputsIdentity names the files an image is built from by device, inode,
// size, mtime and ctime.
func inputsIdentity(files ...string) (string, error) {
	id := ""
	for _, f := range files {
		var st unix.Stat_t
		if err := unix.Stat(f, &st); err != nil {
			return "", err
		}
		id += fmt.Sprintf("%s:%d:%d:%d:%d.%d:%d.%d\x00", f, st.Dev, st.Ino, st.Size,
			st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
	}
	return id, nil
}

// buildImage is images.Build, skipped while its inputs are unchanged since
// the last Build of the same image.
func buildImage(dir, name, binary string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	rootfs := filepath.Join(dir, name, "rootfs")
	id, idErr := inputsIdentity(binary, images.HostCARoots)
	builtImages.Lock()
	known := idErr == nil && builtImages.m[rootfs] == id
	builtImages.Unlock()
	if known {
		if _, err := os.Stat(filepath.Join(rootfs, images.BinaryPath(name))); err == nil {
			return rootfs, nil
		}
	}
	got, err := images.Build(dir, name, binary)
	builtImages.Lock()
	defer builtImages.Unlock()
	if err != nil || idErr != nil || got != rootfs {
		delete(builtImages.m, rootfs)
		return got, err
	}
	builtImages.m[rootfs] = id
	return got, nil
}
