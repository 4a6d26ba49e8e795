//go:build linux && amd64

package gateagent

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// After filterSelf the gate agent still does its work (files, unix
// sockets, new threads) and nothing it never needs: no TCP, UDP or netlink
// socket, no new namespace, no exec. The check runs in a child process,
// since a seccomp filter cannot be removed.
func TestFilterSelf(t *testing.T) {
	if os.Getenv("E2S_SECCOMP_CHILD") != "" {
		filterChild(t)
		return
	}
	// The child is this test built as the gate agent is (CGO_ENABLED=0, see
	// the Makefile): a cgo test binary makes threads with libc's
	// pthread_create, which needs mprotect, denied by the gate's filter, and
	// would fail (or hang) for a reason the real gate agent never meets.
	//
	// Both commands get a WaitDelay: twice under a full make test, with the
	// process gone, the read of its output never saw EOF (some other
	// process still held the pipe's write end; not found yet). ErrWaitDelay
	// then only means the pipe was closed for us after the process ended.
	child := filepath.Join(t.TempDir(), "gateagent.test")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", child, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.WaitDelay = 10 * time.Second
	if out, err := build.CombinedOutput(); err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		t.Fatalf("build the filtered child without cgo: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, child, "-test.run=^TestFilterSelf$", "-test.v")
	cmd.Env = append(os.Environ(), "E2S_SECCOMP_CHILD=1")
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) || !strings.Contains(string(out), "--- PASS: TestFilterSelf") {
		t.Fatalf("filtered child: %v\n%s", err, out)
	}
}

func filterChild(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	if err := filterSelf(); err != nil {
		t.Fatal(err)
	}
	// What it needs.
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
		t.Errorf("write a file: %v", err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("unix listen: %v", err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	if c, err := net.Dial("unix", sock); err != nil {
		t.Errorf("unix dial: %v", err)
	} else {
		c.Close()
	}
	done := make(chan struct{})
	go func() { runtime.LockOSThread(); close(done) }() // a new thread exits: clone works
	<-done
	// What it must not do.
	for name, err := range map[string]error{
		"tcp socket":       socketErr(syscall.AF_INET, syscall.SOCK_STREAM),
		"udp6 socket":      socketErr(syscall.AF_INET6, syscall.SOCK_DGRAM),
		"netlink socket":   socketErr(syscall.AF_NETLINK, syscall.SOCK_RAW),
		"unshare userns":   syscall.Unshare(syscall.CLONE_NEWUSER),
		"exec":             exec.Command("/bin/true").Run(),
		"setuid":           syscall.Setuid(0),
		"ptrace":           syscall.PtraceAttach(os.Getppid()),
		"ioctl TIOCSTI":    ioctlErr(syscall.TIOCSTI),
		"mount":            syscall.Mount("none", dir, "tmpfs", 0, ""),
		"chroot":           syscall.Chroot(dir),
		"keyctl (add_key)": addKeyErr(),
	} {
		if !errors.Is(err, syscall.EPERM) {
			t.Errorf("%s: %v, want EPERM", name, err)
		}
	}
}

func socketErr(domain, typ int) error {
	fd, err := syscall.Socket(domain, typ, 0)
	if err == nil {
		syscall.Close(fd)
	}
	return err
}

func ioctlErr(req uintptr) error {
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, req, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func addKeyErr() error {
	_, _, errno := syscall.Syscall(syscall.SYS_ADD_KEY, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
