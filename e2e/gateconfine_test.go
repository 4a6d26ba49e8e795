package e2e

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/daemon/supervisor"
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
		got := a.gateProbe(t, st)
		t.Logf("probe: %v", got)
		for k, want := range map[string]string{"status.Uid": "64000 64000 64000 64000", "status.CapEff": "0000000000000000",
			"status.NoNewPrivs": "1", "status.Seccomp": "2", "plugin_connect": "ok"} {
			if got[k] != want {
				t.Errorf("%s = %q, want %q (the probe must run in the gate's confinement)", k, got[k], want)
			}
		}
		if _, bad := got["landlock"]; bad {
			t.Errorf("probe could not apply the gate agent's Landlock rules: %s", got["landlock"])
		}
		for _, attack := range []string{"tcp_web_front", "tcp_internet", "admin_socket", "read_other_compartment",
			"read_admin_log", "unlink_admin_log", "write_policy", "write_root", "write_audit_dir_elsewhere",
			"setuid_root", "unshare_userns", "netlink_socket", "ptrace_parent", "kill_supervisor_side"} {
			if r, ok := got[attack]; !ok || r == "ok" {
				t.Errorf("attack %s from the gate's confinement: %q, want an error", attack, r)
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

// gateProbe builds testdata/gateprobe into the gate agent's image and runs
// it with `runc exec` in the gate agent's container.
func (a *appliance) gateProbe(t *testing.T, st supervisor.Status) map[string]string {
	t.Helper()
	rootfs := filepath.Join(a.runDir(), "images", "gate", "rootfs")
	build := exec.Command("go", "build", "-o", filepath.Join(rootfs, "bin", "gateprobe"), "./testdata/gateprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	// The rules the gate agent applies to itself, for its config here.
	cfg := gateagent.Config{AuditLog: filepath.Join(a.dataDir(), "audit", "audit.log"), PolicyDir: filepath.Join(a.dataDir(), "policy", "active")}
	plugin := ""
	for _, n := range []string{"purchasing", "keyhandler", "payment", "inside", "outside"} {
		dir := filepath.Join(a.runDir(), "plugin", n)
		cfg.Compartments = append(cfg.Compartments, gateagent.CompartmentConfig{Name: n, PluginDir: dir})
		if ents, _ := os.ReadDir(dir); plugin == "" && len(ents) > 0 {
			plugin = filepath.Join(dir, ents[0].Name())
		}
	}
	env, err := gateagent.ConfineRules(cfg).Env()
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(a.dataDir(), "keyhandler")
	filepath.WalkDir(other, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && other == filepath.Join(a.dataDir(), "keyhandler") {
			other = p
		}
		return nil
	})
	web := strings.TrimSuffix(strings.TrimPrefix(st.URL, "https://"), "/")
	cmd := exec.Command(filepath.Join(binDir, "runc"), "--root", filepath.Join(a.runDir(), "runc"), "exec", "--env", env,
		a.instance+"-gate", "/bin/gateprobe", "-web", web, "-admin", filepath.Join(a.runDir(), "admin.sock"),
		"-other", other, "-policy", filepath.Join(a.dataDir(), "policy", "active", "registry.yaml"),
		"-adminlog", filepath.Join(a.dataDir(), "audit", "admin.log"), "-plugin", plugin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("runc exec probe: %v\n%s", err, out)
	}
	got := map[string]string{}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(a.runDir(), "admin.sock")); err != nil {
		t.Errorf("admin socket not there to attack: %v", err)
	}
	if other == filepath.Join(a.dataDir(), "keyhandler") {
		t.Errorf("no keyhandler data file to attack")
	}
	return got
}
