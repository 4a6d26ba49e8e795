package e2e

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// TestApplianceKernelDenialsAudited: an idle appliance's audit log holds
// no seccomp or Landlock denial (its compartments' normal run is clean);
// then a probe inside a compartment's confinement (runc exec into its
// container, its Landlock rules applied) and inside the gate agent's
// sandbox attacks the kernel layers: each attack fails with the profile's
// errno and leaves an audit record naming compartment, kind, reason and
// the call or the path: ptrace, mount, keyctl, unshare (seccomp, EPERM),
// a read of /proc outside its Landlock rules (EACCES) and a TCP connect to
// a port outside them (Landlock for purchasing; the gate's cgroup BPF
// program refuses even the socket). Another compartment's data is not
// in its mount namespace at all (ENOENT: nothing for a kernel layer to
// deny or report).
func TestApplianceKernelDenialsAudited(t *testing.T) {
	a := startAppliance(t, "")
	t.Run("idle appliance has no kernel denials", func(t *testing.T) {
		for range 3 {
			if resp, _ := a.do("GET", "/", "", nil); resp.StatusCode != 200 {
				t.Fatalf("GET /: %d", resp.StatusCode)
			}
		}
		time.Sleep(3 * time.Second) // let whatever a compartment does when idle happen
		recs, err := auditlog.Read(a.auditLog())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Script == "kernel/seccomp" || r.Script == "kernel/landlock" {
				t.Errorf("idle appliance audited %s %s %s: %s", r.Caller, r.Script, r.Reason, r.Detail)
			}
		}
	})
	other := ""
	filepath.WalkDir(filepath.Join(a.dataDir(), "keyhandler"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && other == "" {
			other = p
		}
		return nil
	})
	if other == "" {
		t.Fatal("no keyhandler data file to attack")
	}
	// TCP: purchasing may make TCP sockets, and Landlock refuses the port;
	// the gate's cgroup BPF program refuses the socket itself.
	tcp := map[string]struct{ errno, kind, reason, detail string }{
		"purchasing": {"EACCES", "kernel/landlock", "kernel.net_denied", `net.connect_tcp daddr="127.0.0.1" dest="9"`},
		"gate":       {"EPERM", "kernel/sock_create", "kernel.socket_denied", "gate: sock_create family=2"},
	}
	for _, c := range []string{"purchasing", "gate"} {
		t.Run(c, func(t *testing.T) {
			got := a.denyProbe(t, c, other)
			t.Logf("probe in %s: %v", c, got)
			if _, bad := got["landlock"]; bad {
				t.Fatalf("probe could not apply %s's Landlock rules: %s", c, got["landlock"])
			}
			for attack, want := range map[string]string{"ptrace": "EPERM", "mount": "EPERM", "keyctl": "EPERM", "unshare": "EPERM",
				// Not even in its mount namespace: nothing for a kernel layer to deny.
				"open_other_compartment": "ENOENT",
				"open_proc":              "EACCES", "tcp_connect": tcp[c].errno} {
				if got[attack] != want {
					t.Errorf("%s from %s: %q, want %s", attack, c, got[attack], want)
				}
			}
			for syscall, detail := range map[string]string{
				"ptrace":  "ptrace(PTRACE_ATTACH, 1, 0, 0)",
				"mount":   "mount(",
				"keyctl":  "keyctl(KEYCTL_GET_KEYRING_ID, 0xfffffffd",
				"unshare": "unshare(CLONE_NEWUSER)",
			} {
				a.awaitRecord(t, syscall, func(r auditlog.Record) bool {
					return r.Caller == c && r.Script == "kernel/seccomp" && r.Decision == "deny" && r.Reason == "kernel.syscall_denied" &&
						strings.HasPrefix(r.Detail, detail) && strings.Contains(r.Detail, "exe=denyprobe") && r.Count >= 1
				})
			}
			a.awaitRecord(t, "open_proc", func(r auditlog.Record) bool {
				return r.Caller == c && r.Script == "kernel/landlock" && r.Decision == "deny" && r.Reason == "kernel.fs_denied" &&
					strings.HasPrefix(r.Detail, `fs.read_file path="/proc/`) && strings.Contains(r.Detail, "exe=denyprobe") && r.Count >= 1
			})
			a.awaitRecord(t, "tcp_connect", func(r auditlog.Record) bool {
				return r.Caller == c && r.Script == tcp[c].kind && r.Decision == "deny" && r.Reason == tcp[c].reason &&
					strings.HasPrefix(r.Detail, tcp[c].detail) && strings.Contains(r.Detail, "denyprobe")
			})
		})
	}
}

// awaitRecord waits (the kernel layers' records travel supervisor → gate
// agent → log, asynchronously) for a record matching pred.
func (a *appliance) awaitRecord(t *testing.T, what string, pred func(auditlog.Record) bool) auditlog.Record {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		recs, err := auditlog.Read(a.auditLog())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if pred(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			var kernel []string
			for _, r := range recs {
				if strings.HasPrefix(r.Script, "kernel/") {
					kernel = append(kernel, r.Caller+" "+r.Script+" "+r.Reason+" "+r.Detail)
				}
			}
			t.Errorf("%s: no audit record; kernel records: %q", what, kernel)
			return auditlog.Record{}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// denyProbe builds testdata/denyprobe into compartment c's image and runs
// it with `runc exec` in c's container.
func (a *appliance) denyProbe(t *testing.T, c, other string) map[string]string {
	t.Helper()
	rootfs := filepath.Join(a.runDir(), "images", c, "rootfs")
	build := exec.Command("go", "build", "-o", filepath.Join(rootfs, "bin", "denyprobe"), "./testdata/denyprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	cmd := exec.Command(filepath.Join(binDir, "runc"), "--root", filepath.Join(a.runDir(), "runc"), "exec",
		a.instance+"-"+c, "/bin/denyprobe", "-other", other)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("runc exec probe: %v\n%s", err, out)
	}
	got := map[string]string{}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}
	return got
}
