package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/testutil/testctrd"
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

// TestContainerdStdioLikeRunc: the supervisor's stdio contract, for both
// runtimes. Spec.Stdout is an *os.File pipe end the caller closes right
// after Start (as the supervisor does, to see EOF when the program dies):
// the program's first line still arrives while it runs, and the reader sees
// EOF once Wait returned. Spec.Stderr (the supervisor's own stderr) has all
// of a program's last words once Wait returned, also when it dies at once.
func TestContainerdStdioLikeRunc(t *testing.T) {
	for _, rt := range []struct {
		name string
		new  func(t *testing.T) Runtime
	}{
		{"runc", func(t *testing.T) Runtime { return newTestRunc(t) }},
		{"containerd", func(t *testing.T) Runtime { return newTestContainerd(t) }},
	} {
		t.Run(rt.name, func(t *testing.T) {
			r := rt.new(t)
			start := func(mode string) (p Process, stdout, stderrR, stderrW *os.File) {
				t.Helper()
				or, ow, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				er, ew, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { or.Close(); er.Close(); ew.Close() })
				s := probeSpec(t, "purchasing", probeUID, mode)
				s.Stdout, s.Stderr = ow, ew
				p, err = r.Start(context.Background(), s)
				ow.Close()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				or.SetReadDeadline(time.Now().Add(20 * time.Second))
				er.SetReadDeadline(time.Now().Add(20 * time.Second))
				return p, or, er, ew
			}

			t.Run("first line while running, EOF after kill", func(t *testing.T) {
				p, or, _, _ := start("sleep")
				t0 := time.Now()
				line, err := bufio.NewReader(or).ReadString('\n')
				if err != nil || !strings.Contains(line, `"name":"landlock"`) {
					t.Fatalf("first line %q: %v", line, err)
				}
				if err := syscall.Kill(p.Pid(), 0); err != nil {
					t.Fatalf("program not running after its first line: %v", err)
				}
				p.Signal(syscall.SIGKILL)
				if err := p.Wait(); err == nil {
					t.Error("Wait after SIGKILL = nil")
				}
				if rest, err := io.ReadAll(or); err != nil {
					t.Errorf("stdout after Wait: %v (read %q), want EOF", err, rest)
				}
				t.Logf("first line after %v", time.Since(t0))
				if err := p.Close(); err != nil {
					t.Error(err)
				}
			})

			t.Run("program dying at once: its stderr arrives", func(t *testing.T) {
				p, _, er, ew := start("no-such-mode")
				if err := p.Wait(); err == nil {
					t.Error("Wait = nil, want the exit status")
				}
				ew.Close()
				b, err := io.ReadAll(er)
				if err != nil || !strings.Contains(string(b), "unknown mode no-such-mode") {
					t.Errorf("stderr %q: %v", b, err)
				}
				if err := p.Close(); err != nil {
					t.Error(err)
				}
			})
		})
	}
}
