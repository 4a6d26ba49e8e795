package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/internal/daemon/supervisor"
	"github.com/e2sgate/e2sgate/internal/testutil/redteam"
)

// TestApplianceGateConfined: the running gate agent is not root and is
// sandboxed like a compartment (read from its /proc/PID/status and
// namespaces), status.json lists its layers, and a probe inside its
// confinement (runc exec into its container, its own Landlock rules
// applied) reaches its plugin sockets and nothing else: no TCP, no admin
// socket, no other compartment's data, no admin log, no writes to the
// policy or the root.
func TestApplianceGateConfined(t *testing.T) {
	a := startAppliance(t, "")
	st, err := a.status()
	if err != nil || st.Gate == nil || st.Gate.State != supervisor.Running || st.GatePid == 0 {
		t.Fatalf("gate agent status %+v: %v", st.Gate, err)
	}
	pid := st.GatePid
	t.Run("proc status", func(t *testing.T) {
		fields := procStatus(t, pid)
		t.Logf("gate agent pid %d: %v", pid, fields)
		for k, want := range map[string]string{"Uid": "64000 64000 64000 64000", "Gid": "64000 64000 64000 64000",
			"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
			"NoNewPrivs": "1", "Seccomp": "2"} {
			if fields[k] != want {
				t.Errorf("%s = %q, want %q", k, fields[k], want)
			}
		}
		for _, ns := range []string{"user", "pid", "mnt", "ipc", "uts", "net", "cgroup"} {
			gate, err1 := os.Readlink(filepath.Join("/proc", itoa(pid), "ns", ns))
			host, err2 := os.Readlink(filepath.Join("/proc/self/ns", ns))
			if err1 != nil || err2 != nil || gate == host {
				t.Errorf("%s namespace: gate %q host %q (%v, %v)", ns, gate, host, err1, err2)
			}
		}
	})
	t.Run("status layers", func(t *testing.T) {
		for _, l := range []string{"userns", "pidns", "mntns", "ipcns", "utsns", "netns", "uid:64000", "readonly-root", "no-caps", "no-new-privs", "seccomp", "net:none", "runtime:runc"} {
			if !slices.Contains(st.Gate.Layers, l) {
				t.Errorf("status.json gate layers %v lack %s", st.Gate.Layers, l)
			}
		}
	})
	t.Run("probe inside its confinement", func(t *testing.T) {
		plan := a.redteamPlan(t, st, "gate", nil, nil)
		plan.Addrs = map[string]string{"host-web": strings.TrimSuffix(strings.TrimPrefix(st.URL, "https://"), "/"), "internet": "1.1.1.1:443"}
		status, results := a.redProbe(t, "gate", buildRedProbe(t), plan)
		t.Logf("probe: %v", status)
		for k, want := range map[string]string{"Uid": "64000 64000 64000 64000", "CapEff": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"} {
			if status[k] != want {
				t.Errorf("%s = %q, want %q (the probe must run in the gate's confinement)", k, status[k], want)
			}
		}
		got := map[string]redteam.Result{}
		for _, r := range results {
			got[r.Name] = r
		}
		if r := got["control-plugin-socket"]; !r.OK {
			t.Errorf("the probe cannot reach a plugin socket, the gate agent's job: %v", r.Steps)
		}
		for _, attack := range []string{"tcp-host-web", "tcp-internet", "connect-admin-socket", "read-keyhandler-key",
			"read-admin-log", "remove-admin-log", "write-policy", "write-rootfs", "write-beside-audit-dir",
			"setuid-root", "unshare-userns", "socket-netlink-route", "ptrace-pid1", "kill-supervisor"} {
			if r, ok := got[attack]; !ok || r.OK {
				t.Errorf("attack %s from the gate's confinement: %+v, want it tried and failed", attack, r)
			}
		}
		for _, r := range results {
			if r.Class != "control" && r.OK {
				t.Errorf("attack %s from the gate's confinement succeeded: %v", r.Name, r.Steps)
			}
		}
	})
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
