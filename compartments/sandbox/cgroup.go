package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupMount is one mounted cgroup hierarchy.
type cgroupMount struct {
	Dir         string   // mount point
	V2          bool     // cgroup2
	Controllers []string // v1: from the mount options; v2: cgroup.controllers
}

// cgroupMounts lists the cgroup hierarchies mounted on this host. On a
// hybrid host (systemd's layout, and this VM's) the resource controllers
// are v1 hierarchies and a controller-less cgroup2 is mounted at
// /sys/fs/cgroup/unified; runc's cgroupfs driver then sets the limits in
// the v1 hierarchies and also puts the container into a cgroup of the same
// path in the unified hierarchy, which is where cgroup BPF programs attach.
func cgroupMounts() ([]cgroupMount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []cgroupMount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || pf[3] != "/" {
			continue
		}
		switch qf[0] {
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(qf[2], ",") {
				switch o {
				case "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio",
					"pids", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc":
					ctrls = append(ctrls, o)
				default:
					if strings.HasPrefix(o, "name=") {
						ctrls = append(ctrls, o)
					}
				}
			}
			out = append(out, cgroupMount{Dir: pf[4], Controllers: ctrls})
		case "cgroup2":
			b, _ := os.ReadFile(filepath.Join(pf[4], "cgroup.controllers"))
			out = append(out, cgroupMount{Dir: pf[4], V2: true, Controllers: strings.Fields(string(b))})
		}
	}
	return out, sc.Err()
}

// cgroupV2Dir is the compartment's directory in the cgroup2 hierarchy.
func cgroupV2Dir(mounts []cgroupMount, cgroupsPath string) string {
	for _, m := range mounts {
		if m.V2 {
			return filepath.Join(m.Dir, cgroupsPath)
		}
	}
	return ""
}

// removeCgroups removes the compartment's cgroup directory from every
// hierarchy, and the parent directory when it is left empty. A cgroup
// directory can only go once its last process is gone, so it retries for a
// moment.
func removeCgroups(cgroupsPath string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return fmt.Errorf("cgroup mounts: %w", err)
	}
	var errs []error
	for _, m := range mounts {
		dir := filepath.Join(m.Dir, cgroupsPath)
		if err := rmdirRetry(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		// The parent is shared by all compartments: remove it only when
		// empty; EBUSY/ENOTEMPTY mean another compartment still uses it.
		parent := filepath.Dir(dir)
		if parent != m.Dir {
			_ = unix.Rmdir(parent)
		}
	}
	return errors.Join(errs...)
}

func rmdirRetry(dir string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// noSwapAccounting reports a v1 memory hierarchy without memory.memsw.*
// (kernel booted without swap accounting).
func noSwapAccounting(mounts []cgroupMount) bool {
	for _, m := range mounts {
		if m.V2 || !slices.Contains(m.Controllers, "memory") {
			continue
		}
		_, err := os.Stat(filepath.Join(m.Dir, "memory.memsw.limit_in_bytes"))
		return err != nil
	}
	return false
}
