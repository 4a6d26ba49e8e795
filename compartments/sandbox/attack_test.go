package sandbox

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAttacks runs the probe as a compromised compartment ("purchasing")
// next to a victim ("keyhandler", holding a key file) and asserts that every
// attack fails — once with all layers, once without Landlock to show the
// layers below it hold on their own.
func TestAttacks(t *testing.T) {
	r := newTestRunc(t)

	// The victim: keyhandler with its key directory, 0600 files of its uid.
	keys := t.TempDir()
	keyFile := filepath.Join(keys, "merchant.key")
	if err := os.WriteFile(keyFile, []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chownTree(t, keys, victimUID)
	vs := probeSpec(t, "keyhandler", victimUID, "sleep")
	vs.Mounts = []Mount{{Source: keys}}
	victim := startVictim(t, r, vs)

	// Static content, read-only for the attacker. Its files even belong to
	// the attacker's uid, so only the mount and Landlock stand in the way.
	static := t.TempDir()
	if err := os.WriteFile(filepath.Join(static, "index.html"), []byte("<h1>shop</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	chownTree(t, static, probeUID)

	// A service on the host's loopback the attacker must not reach.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Errorf("host loopback service reached from the compartment")
			c.Close()
		}
	}()
	hostPort := ln.Addr().(*net.TCPAddr).Port

	const memLimit = 128 << 20
	const pidsLimit = 64
	variants := []struct {
		name  string
		extra []string
	}{
		{"all layers", nil},
		{"without landlock", []string{"-no-landlock"}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			args := append([]string{"attack",
				"-victim", strconv.Itoa(victim.Pid()),
				"-supervisor", strconv.Itoa(os.Getpid()),
				"-key", keyFile,
				"-static", static,
				"-hostport", strconv.Itoa(hostPort),
				"-balloon-mb", "1024",
			}, v.extra...)
			s := probeSpec(t, "purchasing", probeUID, args...)
			s.Mounts = []Mount{{Source: static}}
			s.Limits = Limits{MemoryBytes: memLimit, Pids: pidsLimit, CPUPercent: 50}
			res := runProbe(t, r, s, 120*time.Second)

			checks := attackChecks(memLimit, pidsLimit)
			names := make([]string, 0, len(checks))
			for n := range checks {
				names = append(names, n)
			}
			sort.Strings(names)
			var report strings.Builder
			for _, name := range names {
				t.Run(name, func(t *testing.T) {
					got, ok := res[name]
					if !ok {
						t.Fatalf("probe did not report %s", name)
					}
					fmt.Fprintf(&report, "%-32s %-8s %s %s\n", name, verdict(got), got.Err, got.Detail)
					if err := checks[name](got); err != nil {
						t.Error(err)
					}
				})
			}
			for name := range res {
				if _, ok := checks[name]; !ok && name != "landlock" && name != "done" {
					t.Errorf("probe reported %s, which the test does not check", name)
				}
			}
			t.Logf("attack results (%s):\n%s", v.name, report.String())
			if err := victim.Signal(syscallZero); err != nil {
				t.Errorf("victim did not survive the attacks: %v", err)
			}
		})
	}
}

func verdict(r Result) string {
	if r.OK {
		return "SUCCEEDED"
	}
	return "blocked"
}

// attackChecks maps each attack the probe makes to what must hold.
func attackChecks(memLimit int64, pidsLimit int) map[string]func(Result) error {
	blocked := func(r Result) error {
		if r.OK {
			return fmt.Errorf("attack %s succeeded (%s)", r.Name, r.Detail)
		}
		return nil
	}
	c := map[string]func(Result) error{}
	for _, n := range []string{
		"read-other-compartment-key", "write-static-new-file", "write-static-overwrite",
		"write-rootfs-new-file", "write-rootfs-etc-hosts", "write-rootfs-own-binary", "write-rootfs-mkdir",
		"proc-victim-environ", "proc-victim-root", "ptrace-victim", "kill-victim",
		"proc-supervisor-environ", "proc-supervisor-root", "ptrace-supervisor", "kill-supervisor",
		"proc-see-other-pids", "proc-1-is-other", "kill-all",
		"mount-tmpfs", "mount-proc", "remount-root-rw", "unshare-userns", "unshare-mntns-thread",
		"unshare-netns-thread", "setuid-root", "bpf-prog-load", "bpf-map-create",
		"socket-raw", "socket-packet", "socket-netlink-route", "socket-mptcp", "keyctl", "io-uring", "chroot",
		"exec-bin-sh", "exec-tmpfs-binary", "connect-host-loopback", "dns-lookup",
	} {
		c[n] = blocked
	}
	// These must fail for the reason under test, not for an earlier one.
	blockedWith := func(want string) func(Result) error {
		return func(r Result) error {
			if err := blocked(r); err != nil {
				return err
			}
			if !strings.Contains(r.Err, want) {
				return fmt.Errorf("%s failed with %q, want %q", r.Name, r.Err, want)
			}
			return nil
		}
	}
	c["exec-bin-sh"] = blockedWith("fork/exec /bin/sh: no such file or directory")
	c["exec-tmpfs-binary"] = blockedWith("fork/exec /tmp/dropped: permission denied")
	c["fork-bomb"] = func(r Result) error {
		if err := blocked(r); err != nil {
			return err
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(r.Detail, "forked="))
		if n >= pidsLimit {
			return fmt.Errorf("fork bomb got %d processes, limit %d", n, pidsLimit)
		}
		return nil
	}
	c["memory-balloon"] = func(r Result) error {
		if err := blocked(r); err != nil {
			return err
		}
		if !strings.Contains(r.Err, "killed") {
			return fmt.Errorf("balloon not killed by the OOM killer: %s", r.Err)
		}
		mb, _ := strconv.Atoi(strings.TrimPrefix(r.Detail, "reached_mb="))
		if int64(mb)<<20 > memLimit {
			return fmt.Errorf("balloon reached %d MiB, limit %d MiB", mb, memLimit>>20)
		}
		return nil
	}
	c["cpu-hog"] = func(r Result) error {
		ms, err := strconv.Atoi(strings.TrimPrefix(r.Detail, "cpu_ms="))
		if err != nil {
			return fmt.Errorf("cpu-hog detail %q", r.Detail)
		}
		// 50% of one core for 1s of wall time, plus slack for scheduling.
		if ms > 700 {
			return fmt.Errorf("4 spinning threads got %d ms of CPU in 1 s; limit is 50%%", ms)
		}
		return nil
	}
	return c
}

// syscallZero is signal 0: checks the process exists.
var (
	syscallZero = syscall.Signal(0)
	syscallKill = syscall.SIGKILL
)
