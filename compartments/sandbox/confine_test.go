package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startVictim starts a probe in "sleep" mode and waits until it is ready.
func startVictim(t *testing.T, r *Runc, s Spec) Process {
	t.Helper()
	return startVictimWith(t, r, s)
}

func startVictimWith(t *testing.T, r Runtime, s Spec) Process {
	t.Helper()
	pr, pw := io.Pipe()
	s.Stdout = pw
	s.Stderr = testWriter{t}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := r.Start(ctx, s)
	if err != nil {
		t.Fatalf("start %s: %v", s.Name, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close %s: %v", s.Name, err)
		}
		pw.Close()
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"ready"`) {
				ready <- nil
				io.Copy(io.Discard, pr)
				return
			}
		}
		ready <- fmt.Errorf("victim exited before ready: %v", sc.Err())
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("victim not ready in 30s")
	}
	return p
}

// TestRuncConfinementSeenFromHost checks each layer from the outside, in the
// kernel's own bookkeeping, not in what the program reports.
func TestRuncConfinementSeenFromHost(t *testing.T) {
	r := newTestRunc(t)
	s := probeSpec(t, "keyhandler", victimUID, "sleep")
	p := startVictim(t, r, s)
	pid := p.Pid()
	status := procFields(t, pid, "status")
	paths := r.paths(s.Name)

	tests := []struct {
		name string
		got  func() string
		want string
	}{
		{"uid", func() string { return status["Uid"] }, fmt.Sprintf("%d\t%d\t%d\t%d", victimUID, victimUID, victimUID, victimUID)},
		{"gid", func() string { return status["Gid"] }, fmt.Sprintf("%d\t%d\t%d\t%d", victimUID, victimUID, victimUID, victimUID)},
		{"supplementary groups", func() string { return status["Groups"] }, ""},
		{"seccomp filter", func() string { return status["Seccomp"] }, "2"},
		{"no_new_privs", func() string { return status["NoNewPrivs"] }, "1"},
		{"CapInh", func() string { return status["CapInh"] }, "0000000000000000"},
		{"CapPrm", func() string { return status["CapPrm"] }, "0000000000000000"},
		{"CapEff", func() string { return status["CapEff"] }, "0000000000000000"},
		{"CapBnd", func() string { return status["CapBnd"] }, "0000000000000000"},
		{"CapAmb", func() string { return status["CapAmb"] }, "0000000000000000"},
		{"uid_map", func() string { return squash(readFile(t, fmt.Sprintf("/proc/%d/uid_map", pid))) },
			fmt.Sprintf("0 %d 1 %d %d 1", DefaultRootHostID, victimUID, victimUID)},
		{"memory limit", func() string { return cgroupFile(t, "memory", paths.cgroups, "memory.limit_in_bytes") }, strconv.Itoa(128 << 20)},
		{"memory+swap limit", func() string { return cgroupFile(t, "memory", paths.cgroups, "memory.memsw.limit_in_bytes") }, strconv.Itoa(128 << 20)},
		{"pids limit", func() string { return cgroupFile(t, "pids", paths.cgroups, "pids.max") }, "64"},
		{"cpu quota", func() string { return cgroupFile(t, "cpu", paths.cgroups, "cpu.cfs_quota_us") }, "50000"},
		{"in cgroup2 dir", func() string {
			return strconv.FormatBool(strings.Contains(readFile(t, filepath.Join(cgroupV2Dir(mustMounts(t), paths.cgroups), "cgroup.procs")), strconv.Itoa(pid)))
		}, "true"},
		{"root read-only", func() string { return mountOpt(t, pid, "/", "ro") }, "true"},
		{"tmp noexec", func() string { return mountOpt(t, pid, "/tmp", "noexec") }, "true"},
		{"tmp nosuid", func() string { return mountOpt(t, pid, "/tmp", "nosuid") }, "true"},
		{"tmp nodev", func() string { return mountOpt(t, pid, "/tmp", "nodev") }, "true"},
		{"no sysfs", func() string { return mountOpt(t, pid, "/sys", "rw") }, "absent"},
		{"landlock rules in env", func() string {
			return strconv.FormatBool(strings.Contains(readFile(t, fmt.Sprintf("/proc/%d/environ", pid)), "E2SGATE_LANDLOCK="))
		}, "true"},
	}
	for _, ns := range []string{"user", "pid", "mnt", "ipc", "uts", "net", "cgroup"} {
		tests = append(tests, struct {
			name string
			got  func() string
			want string
		}{"own " + ns + " namespace", func() string {
			host, _ := os.Readlink("/proc/self/ns/" + ns)
			its, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
			if err != nil {
				return err.Error()
			}
			return strconv.FormatBool(host != its)
		}, "true"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.got(); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("program %d still runs after Close", pid)
	}
}

func procFields(t *testing.T, pid int, file string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(readFile(t, fmt.Sprintf("/proc/%d/%s", pid, file)), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

func mustMounts(t *testing.T) []cgroupMount {
	m, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// cgroupFile reads a file of the compartment's cgroup in the hierarchy that
// has controller ctrl (v2 when it has it, else v1).
func cgroupFile(t *testing.T, ctrl, cgpath, file string) string {
	t.Helper()
	for _, m := range mustMounts(t) {
		for _, c := range m.Controllers {
			if c == ctrl {
				return strings.TrimSpace(readFile(t, filepath.Join(m.Dir, cgpath, file)))
			}
		}
	}
	t.Fatalf("no hierarchy with controller %s", ctrl)
	return ""
}

// mountOpt says whether the mount at target in pid's mount namespace has
// option opt ("absent" when nothing is mounted there).
func mountOpt(t *testing.T, pid int, target, opt string) string {
	t.Helper()
	found := "absent"
	for _, line := range strings.Split(readFile(t, fmt.Sprintf("/proc/%d/mountinfo", pid)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[4] != target {
			continue
		}
		found = "false"
		for _, o := range strings.Split(f[5], ",") {
			if o == opt {
				found = "true"
			}
		}
	}
	return found
}
