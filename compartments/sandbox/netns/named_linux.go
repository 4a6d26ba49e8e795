package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// mountMu serialises making the namespace directory a shared mount point,
// which must happen once, as `ip netns add` does it.
var mountMu sync.Mutex

// prepareDir makes dir a shared mount point of its own, so that namespace
// bind mounts under it propagate to mount namespaces created later (runc's)
// and `ip netns` sees the same namespaces.
func prepareDir(dir string) error {
	mountMu.Lock()
	defer mountMu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	// Not a mount point yet: bind it onto itself, then make it shared.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}

// createNamed creates a new network namespace and keeps it alive by bind
// mounting it on dir/name, the way `ip netns add` does, so that runc can
// join it by path. The calling thread's namespace is never changed: the
// unshare happens on a locked thread that is thrown away afterwards.
func createNamed(dir, name string) (string, error) {
	if err := prepareDir(dir); err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("%s: %w", path, ErrExists)
		}
		return "", err
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the runtime ends this thread when the goroutine
		// returns, so no other goroutine ever runs in the new namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}

// removeNamed unmounts and removes a namespace created by createNamed. The
// kernel frees the namespace, and the interfaces in it, once no process
// and no file descriptor refers to it any more.
func removeNamed(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// do runs f on a thread that is inside the namespace at path. Sockets f
// creates stay in that namespace after f returns. The thread is thrown away
// afterwards, so the namespace never leaks to other goroutines.
func do(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked, see createNamed
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open %s: %w", path, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
