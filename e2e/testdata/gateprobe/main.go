// Command gateprobe attacks from inside the gate agent's confinement: the
// e2e test runs it with `runc exec` in the running gate agent's container
// (its namespaces, cgroup, uid, groups, capabilities, no_new_privs and
// seccomp filter) after it applied the gate agent's own Landlock rules.
// It prints one JSON object: its own /proc/self/status lines and, per
// attack, "ok" or the error.
//
// Usage: gateprobe -web ADDR -admin SOCK -other FILE -policy FILE -adminlog FILE -plugin SOCK
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
)

func main() {
	web := flag.String("web", "", "the web front's TCP address")
	adminSock := flag.String("admin", "", "the supervisor's admin socket")
	other := flag.String("other", "", "a file in a compartment's data directory")
	policy := flag.String("policy", "", "a file of the policy tree")
	adminLog := flag.String("adminlog", "", "the supervisor's admin audit log")
	plugin := flag.String("plugin", "", "a compartment's plugin socket (the gate may connect)")
	flag.Parse()
	out := map[string]string{}
	// What it is and sees before Landlock closes /proc.
	seen := visiblePids()
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		for _, k := range []string{"Uid", "Gid", "CapEff", "CapPrm", "NoNewPrivs", "Seccomp"} {
			if strings.HasPrefix(l, k+":") {
				out["status."+k] = strings.Join(strings.Fields(strings.TrimPrefix(l, k+":")), " ")
			}
		}
	}
	if err := landlock.RestrictSelf(); err != nil {
		out["landlock"] = err.Error()
	}
	res := func(name string, err error) {
		if err == nil {
			out[name] = "ok"
		} else {
			out[name] = err.Error()
		}
	}
	dial := func(network, addr string) error {
		c, err := net.DialTimeout(network, addr, 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	res("plugin_connect", dial("unix", *plugin)) // the control: the gate's own job
	res("tcp_web_front", dial("tcp", *web))
	res("tcp_internet", dial("tcp", "1.1.1.1:443"))
	res("admin_socket", dial("unix", *adminSock))
	res("read_other_compartment", readErr(*other))
	res("read_admin_log", readErr(*adminLog))
	res("unlink_admin_log", os.Remove(*adminLog))
	res("write_policy", os.WriteFile(*policy, []byte("package x\n"), 0o644))
	res("write_root", os.WriteFile("/bin/planted", nil, 0o755))
	res("write_audit_dir_elsewhere", os.WriteFile(filepath.Join(filepath.Dir(*adminLog), "..", "planted"), nil, 0o600))
	res("setuid_root", syscall.Setuid(0))
	res("unshare_userns", syscall.Unshare(syscall.CLONE_NEWUSER))
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW, 0)
	if err == nil {
		syscall.Close(fd)
	}
	res("netlink_socket", err)
	res("ptrace_parent", syscall.PtraceAttach(1))
	res("kill_supervisor_side", killOthers(seen))
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

func readErr(p string) error {
	_, err := os.ReadFile(p)
	return err
}

// visiblePids are the pids in its /proc.
func visiblePids() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killOthers signals (0: only asks) every pid it sees but its own and the
// gate agent's (pid 1 of its pid namespace): there should be none.
func killOthers(pids []int) error {
	for _, pid := range pids {
		if pid != 1 && pid != os.Getpid() && syscall.Kill(pid, 0) == nil {
			return nil // reached a process beside the gate agent: a finding
		}
	}
	return fmt.Errorf("sees only pids %v", pids)
}
