package sandbox

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRuncHandsOverListener: the outside compartment's shape. No network at
// all (lo down), and the only way in is the listening socket the supervisor
// bound and passed as fd 3.
func TestRuncHandsOverListener(t *testing.T) {
	r := newTestRunc(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	s := probeSpec(t, "outside", probeUID, "serve-fd")
	s.Network = Network{Mode: NetNone}
	s.ExtraFiles = []*os.File{lf}
	// Landlock would allow these: the missing network must stop them.
	s.Landlock.BindTCP = []uint16{18081}
	s.Landlock.ConnectTCP = []uint16{18081}

	done := make(chan map[string]Result, 1)
	go func() { done <- runProbe(t, r, s, 30*time.Second) }()
	var reply string
	for i := 0; i < 100 && reply == ""; i++ {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		reply = string(b)
	}
	res := <-done
	if reply != "hello from the compartment\n" {
		t.Errorf("reply through the handed-over socket = %q", reply)
	}
	tests := []struct {
		name   string
		wantOK bool
		errHas string
	}{
		{"inherited-listener", true, ""},
		{"accept", true, ""},
		{"loopback", false, "network is unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := res[tt.name]
			if got.OK != tt.wantOK || !strings.Contains(got.Err, tt.errHas) {
				t.Errorf("%s = %+v, want ok=%v err containing %q", tt.name, got, tt.wantOK, tt.errHas)
			}
		})
	}
}

// TestRuncSignalWaitClose: Signal reaches the program, Wait reports how it
// ended, Close is idempotent and leaves nothing (newTestRunc checks).
func TestRuncSignalWaitClose(t *testing.T) {
	r := newTestRunc(t)
	p := startVictim(t, r, probeSpec(t, "payment", probeUID, "sleep"))
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := p.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Wait = %v, want an exit error", err)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
	}
	for i := 0; i < 2; i++ {
		if err := p.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
}

// TestRuncRestartAfterSupervisorCrash: a compartment left running by a dead
// supervisor (simulated: its runc process killed) is cleared by the next
// Start of the same compartment.
func TestRuncRestartAfterSupervisorCrash(t *testing.T) {
	r := newTestRunc(t)
	s := probeSpec(t, "catalogue", probeUID, "sleep")
	old := startVictim(t, r, s).(*runcProcess)
	// The supervisor "dies": runc run is killed, the program runs on.
	old.cmd.Process.Kill()
	<-old.done
	if err := syscall.Kill(old.pid, 0); err != nil {
		t.Fatalf("program died with runc: %v", err)
	}
	// Forget it (the new supervisor does not know it) and start again.
	old.closeOnce.Do(func() {})
	p := startVictim(t, r, s)
	if p.Pid() == old.pid {
		t.Fatal("same pid after restart")
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(old.pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("stale program %d still runs", old.pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRuncStdoutUnbuffered: a line the program writes reaches Spec.Stdout
// while the program keeps running (go-plugin's handshake depends on it).
func TestRuncStdoutUnbuffered(t *testing.T) {
	r := newTestRunc(t)
	pr, pw := io.Pipe()
	s := probeSpec(t, "purchasing", probeUID, "sleep")
	s.Stdout = pw
	p, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Scan()
		line <- sc.Text()
	}()
	select {
	case l := <-line:
		if !strings.Contains(l, `"name":"landlock"`) {
			t.Errorf("first line %q", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no line from a running program")
	}
	if err := syscall.Kill(p.Pid(), 0); err != nil {
		t.Errorf("program not running after its first line: %v", err)
	}
	pw.Close()
}

// TestRuncRefuses: specs that cannot be confined as asked never start.
func TestRuncRefuses(t *testing.T) {
	r := newTestRunc(t)
	bin := probe(t)
	tests := []struct {
		name string
		spec Spec
		want error
	}{
		{"root uid", Spec{Name: "x", Binary: bin, UID: 0, GID: 1000, Network: Network{Mode: NetNone}}, ErrInvalidSpec},
		{"userns root id", Spec{Name: "x", Binary: bin, UID: DefaultRootHostID, GID: 1000, Network: Network{Mode: NetNone}}, ErrInvalidSpec},
		{"bad name", Spec{Name: "../x", Binary: bin, UID: 1000, GID: 1000, Network: Network{Mode: NetNone}}, ErrInvalidSpec},
		{"no network mode", Spec{Name: "x", Binary: bin, UID: 1000, GID: 1000}, ErrInvalidSpec},
		{"mount over /etc", Spec{Name: "x", Binary: bin, UID: 1000, GID: 1000, Network: Network{Mode: NetNone}, Mounts: []Mount{{Source: "/tmp", Target: "/etc"}}}, ErrInvalidSpec},
		{"veth without attacher", Spec{Name: "inside", Binary: bin, UID: 1000, GID: 1000, Network: Network{Mode: NetVeth}}, ErrNoNetAttacher},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := r.Start(context.Background(), tt.spec)
			if err == nil {
				p.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Start = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(r.StateDir, "netns", r.IDPrefix+"inside")); err == nil {
		t.Error("refused start left a netns")
	}
}

// TestRuncConcurrentCompartments: the supervisor starts and stops its
// compartments concurrently; they must not trip over each other's
// namespaces, cgroups or state, and all of it goes at the end.
func TestRuncConcurrentCompartments(t *testing.T) {
	r := newTestRunc(t)
	names := []string{"outside", "purchasing", "payment", "keyhandler"}
	procs := make([]Process, len(names))
	errs := make(chan error, len(names))
	for i, n := range names {
		go func() {
			s := probeSpec(t, n, uint32(probeUID+10+i), "sleep")
			p, err := r.Start(context.Background(), s)
			procs[i] = p
			errs <- err
		}()
	}
	for range names {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	seen := map[string]bool{}
	for _, p := range procs {
		if p == nil {
			continue
		}
		ns, _ := os.Readlink("/proc/" + strconv.Itoa(p.Pid()) + "/ns/net")
		if seen[ns] {
			t.Errorf("two compartments share network namespace %s", ns)
		}
		seen[ns] = true
	}
	for _, p := range procs {
		if p == nil {
			continue
		}
		go func() { errs <- p.Close() }()
	}
	for _, p := range procs {
		if p == nil {
			continue
		}
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
