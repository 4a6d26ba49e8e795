package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/testctrd"
)

// startContainerd runs a containerd daemon of the test's own: own root,
// state, sockets and config, stopped (and its leftovers removed) when the
// test ends.
func startContainerd(t *testing.T) string {
	t.Helper()
	return startContainerdB(t)
}

func startContainerdB(t testing.TB) string {
	t.Helper()
	requireRoot(t)
	return testctrd.Start(t, testTop)
}

func newTestContainerd(t *testing.T) *Containerd {
	sock := startContainerd(t)
	c := &Containerd{Runc: *newTestRunc(t), Address: sock, Namespace: "e2sgate-test"}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestContainerdSameConfinement: the containerd backend produces the same
// confinement as runc, checked from the host, and leaves nothing behind.
func TestContainerdSameConfinement(t *testing.T) {
	c := newTestContainerd(t)
	s := probeSpec(t, "payment", victimUID, "sleep")
	p := startVictimWith(t, c, s)
	pid := p.Pid()
	status := procFields(t, pid, "status")
	paths := c.paths(s.Name)
	tests := []struct{ name, got, want string }{
		{"uid", status["Uid"], fmt.Sprintf("%d\t%d\t%d\t%d", victimUID, victimUID, victimUID, victimUID)},
		{"seccomp filter", status["Seccomp"], "2"},
		{"no_new_privs", status["NoNewPrivs"], "1"},
		{"CapBnd", status["CapBnd"], "0000000000000000"},
		{"CapEff", status["CapEff"], "0000000000000000"},
		{"uid_map", squash(readFile(t, fmt.Sprintf("/proc/%d/uid_map", pid))), fmt.Sprintf("0 %d 1 %d %d 1", DefaultRootHostID, victimUID, victimUID)},
		{"memory limit", cgroupFile(t, "memory", paths.cgroups, "memory.limit_in_bytes"), strconv.Itoa(128 << 20)},
		{"pids limit", cgroupFile(t, "pids", paths.cgroups, "pids.max"), "64"},
		{"root read-only", mountOpt(t, pid, "/", "ro"), "true"},
		{"tmp noexec", mountOpt(t, pid, "/tmp", "noexec"), "true"},
	}
	for _, ns := range allNamespaces {
		host, _ := os.Readlink("/proc/self/ns/" + ns)
		its, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		tests = append(tests, struct{ name, got, want string }{"own " + ns + " namespace", strconv.FormatBool(host != its), "true"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
			}
		})
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); !errors.Is(err, ErrExit) {
		t.Errorf("Wait after SIGTERM = %v, want ErrExit", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestContainerdAttacks: the attack suite against the containerd backend.
func TestContainerdAttacks(t *testing.T) {
	c := newTestContainerd(t)
	victim := startVictimWith(t, c, probeSpec(t, "keyhandler", victimUID, "sleep"))
	s := probeSpec(t, "purchasing", probeUID, "attack",
		"-victim", strconv.Itoa(victim.Pid()), "-supervisor", strconv.Itoa(os.Getpid()),
		"-key", "/nonexistent/key", "-static", "/nonexistent", "-balloon-mb", "1024")
	res := runProbeWith(t, c, s, 120*time.Second)
	checks := attackChecks(128<<20, 64)
	for name, check := range checks {
		if strings.HasPrefix(name, "write-static") || name == "connect-host-loopback" {
			continue // no static mount / host service in this run
		}
		t.Run(name, func(t *testing.T) {
			got, ok := res[name]
			if !ok {
				t.Fatalf("probe did not report %s", name)
			}
			if err := check(got); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestContainerdRefusesExtraFiles(t *testing.T) {
	c := &Containerd{Address: "/nonexistent.sock"}
	_, err := c.Start(context.Background(), Spec{Name: "outside", ExtraFiles: []*os.File{os.Stdin}})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Start with ExtraFiles = %v, want ErrUnsupported", err)
	}
}
