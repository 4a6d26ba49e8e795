// Command denyprobe attacks the kernel layers from inside a compartment:
// the e2e test runs it with `runc exec` in a running compartment's
// container (its namespaces, cgroup, uid, seccomp filter), and it applies
// the compartment's own Landlock rules (E2SGATE_LANDLOCK, inherited from
// the container's process) first. It prints one JSON object: per attack,
// "ok" or the errno's name.
//
// Usage: denyprobe -other FILE
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
)

func main() {
	other := flag.String("other", "", "another compartment's data file (host path)")
	flag.Parse()
	out := map[string]string{}
	if err := landlock.RestrictSelf(); err != nil {
		out["landlock"] = err.Error()
	}
	res := func(name string, err error) {
		var en syscall.Errno
		switch {
		case err == nil:
			out[name] = "ok"
		case errors.As(err, &en):
			out[name] = unix.ErrnoName(en)
		default:
			out[name] = err.Error()
		}
	}
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_ATTACH, 1, 0, 0, 0, 0)
	res("ptrace", errnoErr(e))
	res("mount", unix.Mount("none", "/tmp", "tmpfs", 0, ""))
	_, _, e = unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd) /* KEY_SPEC_SESSION_KEYRING */, 0)
	res("keyctl", errnoErr(e))
	res("unshare", unix.Unshare(unix.CLONE_NEWUSER))
	res("open_other_compartment", openErr(*other))
	// Visible in the container (its own /proc) but outside its rules.
	res("open_proc", openErr("/proc/self/status"))
	// A TCP port outside its rules (Landlock's connect hook runs before
	// the cgroup BPF one).
	c, err := net.DialTimeout("tcp", "127.0.0.1:9", 2*time.Second)
	if err == nil {
		c.Close()
	}
	res("tcp_connect", err)
	b, _ := json.Marshal(out)
	os.Stdout.Write(append(b, '\n'))
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func openErr(p string) error {
	f, err := os.Open(p)
	if err == nil {
		f.Close()
	}
	return err
}
