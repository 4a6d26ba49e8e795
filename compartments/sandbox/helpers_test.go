package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/images"
)

// Test compartments run as these host ids (unused on CI machines).
const (
	probeUID  = 47001
	victimUID = 47002
)

var (
	probeOnce sync.Once
	probeBin  string
	probeErr  error
	testTop   string // 0755 scratch dir shared by the tests of this binary
)

func TestMain(m *testing.M) {
	var code int
	func() {
		var err error
		testTop, err = os.MkdirTemp("", "sandbox-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
			return
		}
		defer os.RemoveAll(testTop)
		// The compartment's uid must traverse to its image.
		if err := os.Chmod(testTop, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
			return
		}
		code = m.Run()
	}()
	os.Exit(code)
}

// probe builds testdata/probe once, static, as a compartment program.
func probe(t testing.TB) string {
	t.Helper()
	probeOnce.Do(func() {
		probeBin = filepath.Join(testTop, "probe")
		probeErr = images.CompileStatic(context.Background(), "./testdata/probe", probeBin)
	})
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	return probeBin
}

// pinnedRunc is the runc `make build` put in the module's bin/ (the one
// the appliance runs); the test fails, saying to run make build, without.
func pinnedRunc(t testing.TB) string {
	t.Helper()
	bin, err := PinnedRunc(filepath.Join("..", "..", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// requireRoot: the sandbox needs root; CI runs as root, so this fails
// rather than skips.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("sandbox tests must run as root (they do in CI)")
	}
}

// newTestRunc returns a runc runtime whose state, images and cgroups are the
// test's own, and checks after the test that nothing is left behind.
func newTestRunc(t testing.TB) *Runc {
	t.Helper()
	requireRoot(t)
	dir, err := os.MkdirTemp(testTop, "rt-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	tag := filepath.Base(dir)
	level := slog.LevelDebug
	if _, bench := t.(*testing.B); bench {
		level = slog.LevelInfo // keep benchmark output readable
	}
	r := &Runc{
		Binary:       pinnedRunc(t),
		StateDir:     filepath.Join(dir, "state"),
		ImageDir:     filepath.Join(dir, "images"),
		CgroupParent: "e2sgate-test-" + tag,
		IDPrefix:     "t" + tag + "-",
		Log:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})),
	}
	t.Cleanup(func() {
		assertNoLeftovers(t, r)
		os.RemoveAll(dir)
	})
	return r
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// assertNoLeftovers fails if a runtime left containers, netns files or cgroup
// directories (empty ones included).
func assertNoLeftovers(t testing.TB, r *Runc) {
	t.Helper()
	mounts, err := cgroupMounts()
	if err != nil {
		t.Error(err)
		return
	}
	for _, m := range mounts {
		if _, err := os.Stat(filepath.Join(m.Dir, r.CgroupParent)); err == nil {
			t.Errorf("cgroup leftover: %s", filepath.Join(m.Dir, r.CgroupParent))
		}
	}
	for _, d := range []string{"netns", "bundles"} {
		ents, _ := os.ReadDir(filepath.Join(r.StateDir, d))
		for _, e := range ents {
			t.Errorf("leftover %s/%s", d, e.Name())
		}
	}
	ents, _ := os.ReadDir(filepath.Join(r.StateDir, "runc"))
	for _, e := range ents {
		t.Errorf("leftover runc state %s", e.Name())
	}
	// The containerd backend's shim runs runc with this root, one
	// directory per containerd namespace.
	nss, _ := os.ReadDir(filepath.Join(r.StateDir, "containerd-runc"))
	for _, ns := range nss {
		ents, _ := os.ReadDir(filepath.Join(r.StateDir, "containerd-runc", ns.Name()))
		for _, e := range ents {
			t.Errorf("leftover runc state (containerd) %s/%s", ns.Name(), e.Name())
		}
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(b, []byte(r.StateDir)) {
		t.Errorf("leftover mounts under %s", r.StateDir)
	}
}

// Result mirrors testdata/probe's report line.
type Result struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Err    string `json:"err,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// probeSpec is the Spec the supervisor would build for a function
// compartment, running the probe.
func probeSpec(t testing.TB, name string, uid uint32, args ...string) Spec {
	return Spec{
		Name:    name,
		Label:   "confidential:" + name,
		Binary:  probe(t),
		Args:    args,
		UID:     uid,
		GID:     uid,
		Network: Network{Mode: NetLoopback},
		Limits:  Limits{MemoryBytes: 128 << 20, Pids: 64, CPUPercent: 50},
	}
}

// runProbe starts s, collects its JSON lines until it exits, and returns
// them by name.
func runProbe(t *testing.T, r *Runc, s Spec, timeout time.Duration) map[string]Result {
	t.Helper()
	return runProbeWith(t, r, s, timeout)
}

func runProbeWith(t *testing.T, r Runtime, s Spec, timeout time.Duration) map[string]Result {
	t.Helper()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	s.Stdout, s.Stderr = pw, &stderr
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p, err := r.Start(ctx, s)
	if err != nil {
		t.Fatalf("start %s: %v", s.Name, err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	go func() {
		err := p.Wait()
		pw.CloseWithError(fmt.Errorf("probe exited: %v", err))
	}()
	go func() {
		<-ctx.Done()
		p.Signal(os.Kill)
	}()
	results := map[string]Result{}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var res Result
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			t.Logf("probe: %s", sc.Text())
			continue
		}
		results[res.Name] = res
	}
	if _, ok := results["done"]; !ok {
		t.Fatalf("probe did not finish: %v\nstderr: %s\nresults: %+v", sc.Err(), stderr.String(), results)
	}
	return results
}

func chownTree(t testing.TB, dir string, uid int) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
	// t.TempDir's parents are 0700.
	for d := filepath.Dir(dir); d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil && fi.Mode().Perm()&0o001 == 0 {
			os.Chmod(d, fi.Mode().Perm()|0o011)
		}
	}
}
