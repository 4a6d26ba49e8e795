package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// fakeAttacher records what the runtime hands a NetAttacher.
type fakeAttacher struct {
	mu       sync.Mutex
	attached []NetAttachment
	detached []NetAttachment
	checks   []string // what held at Attach time
}

func (f *fakeAttacher) Attach(ctx context.Context, a NetAttachment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached = append(f.attached, a)
	if fi, err := os.Stat(a.NetnsPath); err == nil && fi.Mode().IsRegular() {
		f.checks = append(f.checks, "netns-exists")
	}
	if fi, err := os.Stat(a.CgroupV2); err == nil && fi.IsDir() {
		f.checks = append(f.checks, "cgroup2-dir-exists")
	}
	if b, err := os.ReadFile(filepath.Join(a.CgroupV2, "cgroup.procs")); err == nil && len(strings.TrimSpace(string(b))) == 0 {
		f.checks = append(f.checks, "program-not-yet-running")
	}
	return nil
}

func (f *fakeAttacher) Detach(a NetAttachment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = append(f.detached, a)
	return nil
}

// TestRuncNetAttacherHookPoint: the hook for veth/nftables/cgroup BPF is
// called with the prepared namespace and the cgroup v2 directory before the
// program runs, the program then runs in both, and Detach follows Close.
func TestRuncNetAttacherHookPoint(t *testing.T) {
	r := newTestRunc(t)
	fa := &fakeAttacher{}
	r.Net = fa
	s := probeSpec(t, "inside", probeUID, "sleep")
	s.Network.Mode = NetVeth
	p := startVictim(t, r, s)

	fa.mu.Lock()
	if len(fa.attached) != 1 {
		t.Fatalf("Attach called %d times", len(fa.attached))
	}
	a := fa.attached[0]
	for _, want := range []string{"netns-exists", "cgroup2-dir-exists", "program-not-yet-running"} {
		if !slices.Contains(fa.checks, want) {
			t.Errorf("at Attach time: %s does not hold (got %v)", want, fa.checks)
		}
	}
	fa.mu.Unlock()

	its, _ := os.Readlink("/proc/" + strconv.Itoa(p.Pid()) + "/ns/net")
	if ino := statIno(t, a.NetnsPath); its != "net:["+strconv.FormatUint(ino, 10)+"]" {
		t.Errorf("program's netns %s is not the attached one (inode %d)", its, ino)
	}
	procs, err := os.ReadFile(filepath.Join(a.CgroupV2, "cgroup.procs"))
	if err != nil || !strings.Contains(string(procs), strconv.Itoa(p.Pid())) {
		t.Errorf("program %d not in the attached cgroup %s: %q %v", p.Pid(), a.CgroupV2, procs, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	fa.mu.Lock()
	defer fa.mu.Unlock()
	// One Detach before Start (stale clean-up), one at Close.
	if n := len(fa.detached); n != 2 {
		t.Errorf("Detach called %d times, want 2", n)
	}
}

func statIno(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
