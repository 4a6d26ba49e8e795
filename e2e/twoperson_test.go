package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// The two-person rule against a single dishonest operator (issue 17), each
// through the real admin socket with real accounts.

var proposalID = regexp.MustCompile(`proposal ([0-9a-f]+):`)

// propose runs an e2sctl command that makes a proposal and returns its id.
func (a *appliance) propose(t *testing.T, uid int, args ...string) (string, string) {
	t.Helper()
	code, out := a.ctl(uid, args...)
	m := proposalID.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("%v: exit %d\n%s", args, code, out)
	}
	return m[1], out
}

func (a *appliance) adminRecords(t *testing.T, f auditlog.Filter) []auditlog.Record {
	t.Helper()
	recs, err := auditlog.Search(filepath.Join(a.dataDir(), "audit", "admin.log"), f, 0)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// An approval carries out what the approver read or nothing: two identical
// rollbacks cannot both run, and a proposal computed against a set that is
// no longer in force is refused.
func TestAdminApprovalsBoundToState(t *testing.T) {
	pol := policyDir(t, nil)
	a := startAppliance(t, "policy_dir: "+pol+"\n")
	v1 := policyDir(t, map[string]func(string) string{"registry.yaml": func(s string) string {
		return strings.Replace(s, "    handler: catalogue\n    methods: [GET]\n    callers: [outside]", "    handler: catalogue\n    methods: [GET]\n    callers: [purchasing]", 1)
	}})
	v2 := policyDir(t, map[string]func(string) string{"gate.rego": func(s string) string { return s + "\n# version 2\n" }})
	for _, dir := range []string{v1, v2} {
		id, _ := a.propose(t, uidSam, "policy", "propose", dir)
		if code, out := a.ctl(uidSue, "approve", id); code != 0 {
			t.Fatalf("approve: exit %d\n%s", code, out)
		}
	}
	if _, out := a.ctl(uidSam, "policy", "show"); !strings.Contains(out, `"active": 2`) {
		t.Fatalf("set up versions 1 and 2:\n%s", out)
	}

	t.Run("double rollback", func(t *testing.T) {
		id, out := a.propose(t, uidSam, "policy", "rollback")
		if !strings.Contains(out, "roll the policy back from version 2 to version 1: 2 calls change") || !strings.Contains(out, "outside calls purchasing/catalogue") {
			t.Fatalf("the approver is not shown what the rollback does:\n%s", out)
		}
		// The same rollback again, by either secadmin: refused while the
		// first waits, naming it and what to do.
		for _, uid := range []int{uidSam, uidSue} {
			code, out := a.ctl(uid, "policy", "rollback")
			if code != 1 || !strings.Contains(out, "[adm.pending]") || !strings.Contains(out, "proposal "+id) || !strings.Contains(out, "approve or reject it") {
				t.Fatalf("second rollback proposal: exit %d\n%s", code, out)
			}
		}
		if code, out := a.ctl(uidSue, "approve", id); code != 0 || !strings.Contains(out, `"active": 1`) {
			t.Fatalf("approve the rollback: exit %d\n%s", code, out)
		}
		if code, out := a.ctl(uidSue, "approve", id); code != 1 || !strings.Contains(out, "is approved") {
			t.Fatalf("approved twice: exit %d\n%s", code, out)
		}
		if _, out := a.ctl(uidSam, "policy", "show"); !strings.Contains(out, `"active": 1`) {
			t.Fatalf("after one rollback:\n%s", out)
		}
	})

	t.Run("stale propose", func(t *testing.T) {
		id, out := a.propose(t, uidSam, "policy", "propose", v2)
		if !strings.Contains(out, "in place of version 1: 2 calls change") {
			t.Fatalf("the approver is not shown what the activation does:\n%s", out)
		}
		// Nothing else may be activated in between through the socket...
		if code, out := a.ctl(uidSue, "policy", "propose", pol); code != 1 || !strings.Contains(out, "[adm.pending]") {
			t.Fatalf("activation while one is pending: exit %d\n%s", code, out)
		}
		// ...so the set in force changes by root's hand only: a restore of
		// data_dir/policy to version 0.
		root := filepath.Join(a.dataDir(), "policy")
		os.Remove(filepath.Join(root, "active.tmp"))
		if err := os.Symlink(filepath.Join("versions", "0"), filepath.Join(root, "active.tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(root, "active.tmp"), filepath.Join(root, "active")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "history"), []byte("[0]"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := a.ctl(uidSue, "approve", id)
		if code != 1 || !strings.Contains(out, "[adm.stale]") || !strings.Contains(out, "computed against active version 1") ||
			!strings.Contains(out, "now active version 0") || !strings.Contains(out, "propose again") {
			t.Fatalf("approval of a stale proposal: exit %d\n%s", code, out)
		}
		if _, out := a.ctl(uidSam, "policy", "show"); !strings.Contains(out, `"active": 0`) {
			t.Fatalf("a stale proposal changed the set in force:\n%s", out)
		}
		// The stale proposal is void and blocks nothing.
		a.propose(t, uidSue, "policy", "propose", v2)
	})

	for _, reason := range []string{"adm.pending", "adm.stale"} {
		if recs := a.adminRecords(t, auditlog.Filter{Decision: "deny", Reason: reason}); len(recs) == 0 {
			t.Errorf("no %s denial in the admin log", reason)
		}
	}
}

// A secadmin cannot give himself a second account: a role goes to a system
// account under its own name, never under a name the proposer types, never
// to a uid the system does not know, and the proposal shows the person. A
// proposer who loses the role cannot have his proposal approved.
func TestAdminSecondUIDTakeoverRefused(t *testing.T) {
	a := startAppliance(t, "policy_dir: "+policyDir(t, nil)+"\n")
	tests := []struct {
		args   []string
		reason string
		says   string
	}{
		{[]string{"role", "assign", strconv.Itoa(uidBob), "secadmin", "-name", "e2ssam"}, "adm.account_mismatch", `uid 61008 is "e2sbob" in the system account database, not "e2ssam"`},
		{[]string{"role", "assign", strconv.Itoa(uidGhost), "secadmin"}, "adm.account_mismatch", "uid 61009 is no account on this system"},
		{[]string{"role", "assign", strconv.Itoa(uidGhost), "secadmin", "-name", "e2ssam"}, "adm.account_mismatch", "uid 61009 is no account on this system"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args[2:], " "), func(t *testing.T) {
			code, out := a.ctl(uidSam, tc.args...)
			if code != 1 || !strings.Contains(out, "["+tc.reason+"]") || !strings.Contains(out, tc.says) {
				t.Fatalf("exit %d, want 1 %s saying %q\n%s", code, tc.reason, tc.says, out)
			}
		})
	}
	if _, out := a.ctl(uidSue, "proposals"); strings.Contains(out, `"pending"`) {
		t.Fatalf("a refused role change left a proposal:\n%s", out)
	}
	// A real second person: the approver reads whom the role goes to.
	_, out := a.propose(t, uidSam, "role", "assign", strconv.Itoa(uidBob), "secadmin")
	if !strings.Contains(out, "assign role secadmin to e2sbob (uid 61008): roles [] → [secadmin]") {
		t.Fatalf("role change does not show the person:\n%s", out)
	}

	// The proposer loses the role before the approval.
	id, _ := a.propose(t, uidSam, "policy", "propose", policyDir(t, map[string]func(string) string{"gate.rego": func(s string) string { return s + "\n# sam's\n" }}))
	rv, _ := a.propose(t, uidSue, "role", "revoke", strconv.Itoa(uidSam), "secadmin")
	if code, out := a.ctl(uidSam, "approve", rv); code != 0 {
		t.Fatalf("revoke: exit %d\n%s", code, out)
	}
	code, out := a.ctl(uidSue, "approve", id)
	if code != 3 || !strings.Contains(out, "[adm.proposer_lost]") || !strings.Contains(out, "uid:61001(e2ssam) no longer holds") {
		t.Fatalf("approval of a former secadmin's proposal: exit %d\n%s", code, out)
	}
	if _, out := a.ctl(uidSue, "policy", "show"); !strings.Contains(out, `"active": 0`) {
		t.Fatalf("policy changed:\n%s", out)
	}
	for _, reason := range []string{"adm.account_mismatch", "adm.proposer_lost"} {
		if recs := a.adminRecords(t, auditlog.Filter{Decision: "deny", Reason: reason}); len(recs) == 0 {
			t.Errorf("no %s denial in the admin log", reason)
		}
	}
}

// A candidate that writes the recorded user into its reasons reveals
// nothing in a secadmin's shadow report. The recorded user is the buyer
// purchasing proved (a signed request), so the calls are a buyer's reads
// of the private catalogue.
func TestPolicyShadowLeaksNoAuditData(t *testing.T) {
	a := startAppliance(t, "policy_dir: "+policyDir(t, nil)+"\n")
	mia, bob := puNewIdentity(t, "Mia"), puNewIdentity(t, "Bob")
	puEnrol(t, a, mia, bob)
	leaking := policyDir(t, map[string]func(string) string{"gate.rego": func(s string) string {
		return s + `
denials contains reason if {
	input.script == "purchasing/private"
	startswith(input.user.name, "buyer:")
	reason := concat("", ["leak:", input.user.name])
}
`
	}})
	if code, out := a.ctl(uidSam, "policy", "check", leaking); code != 0 {
		t.Fatalf("the leaking candidate does not pass its checks: exit %d\n%s", code, out)
	}
	if code, out := a.ctl(uidSam, "policy", "shadow", leaking); code != 0 || !strings.Contains(out, `"user_input": false`) {
		t.Fatalf("shadow: exit %d\n%s", code, out)
	}
	buyer := puClient(a, bob)
	for range 3 {
		if resp, b := puDo(t, a, buyer, "GET", "/cgi-bin/purchasing/private", "", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("private catalogue: %d %s", resp.StatusCode, b)
		}
	}
	// The auditor sees who called: there is something to leak.
	if _, out := a.ctl(uidAda, "audit", "search", "-script", "purchasing/private"); strings.Count(out, `"user":"buyer:`+bob.fp()+`"`) != 3 {
		t.Fatalf("the calls carry no user:\n%s", out)
	}
	var out string
	waitFor(t, "the shadow sees the calls", func() bool {
		_, out = a.ctl(uidSue, "policy", "shadow-report")
		return strings.Contains(out, `"calls": 3`)
	})
	if strings.Contains(out, "leak") || strings.Contains(out, "buyer:") || !strings.Contains(out, `"disagreements": []`) {
		t.Fatalf("the shadow report leaks or disagrees:\n%s", out)
	}
	if code, out := a.ctl(uidSam, "policy", "shadow-stop"); code != 0 || strings.Contains(out, "leak") || strings.Contains(out, "buyer:") {
		t.Fatalf("shadow-stop: exit %d\n%s", code, out)
	}
}

var buildFlood sync.Once

// flood runs the flood rig as uid and returns its answer counts.
func (a *appliance) flood(t *testing.T, uid int, args ...string) map[string]int {
	t.Helper()
	buildFlood.Do(func() {
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "flood"), "./testdata/flood").CombinedOutput()
		if err != nil {
			t.Fatalf("build flood: %v %s", err, out)
		}
	})
	cmd := exec.Command(filepath.Join(binDir, "flood"), append([]string{"-socket", filepath.Join(a.runDir(), "admin.sock")}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), NoSetGroups: true}}
	out, err := cmd.Output()
	var m map[string]int
	if err != nil || json.Unmarshal(out, &m) != nil {
		t.Fatalf("flood %v: %v %s", args, err, out)
	}
	return m
}

// Any local account may connect to the admin socket; one without a role is
// refused before anything is read, however often and however much it
// sends, with one audit record; a role holder is held to its share.
func TestAdminSocketFlood(t *testing.T) {
	a := startAppliance(t, "policy_dir: "+policyDir(t, nil)+"\n")
	before := len(a.adminRecords(t, auditlog.Filter{}))

	const n = 300
	got := a.flood(t, uidNoone, "-n", strconv.Itoa(n), "-size", strconv.Itoa(4<<20))
	if got["adm.no_role"] != n {
		t.Fatalf("flood of %d connections of 4 MiB: answers %v, want all adm.no_role", n, got)
	}
	if a.cmd.ProcessState != nil {
		t.Fatalf("the supervisor died: %v", a.cmd.ProcessState)
	}
	if code, out := a.ctl(uidOtto, "status"); code != 0 || !strings.Contains(out, "gate_pid") {
		t.Fatalf("status after the flood: exit %d\n%s", code, out)
	}
	recs := a.adminRecords(t, auditlog.Filter{User: "uid:" + strconv.Itoa(uidNoone)})
	if len(recs) < 1 || len(recs) > 2 || recs[0].Reason != "adm.no_role" || recs[0].Script != "e2sctl (connection)" {
		t.Fatalf("%d admin records for %d refused connections, want 1 or 2: %+v", len(recs), n, recs)
	}
	if grown := len(a.adminRecords(t, auditlog.Filter{})) - before; grown > 3 {
		t.Fatalf("the admin log grew by %d records during the flood", grown)
	}

	// A role holder: a request over the size cap is refused, and
	// connections over the per-uid cap are answered at once.
	if got := a.flood(t, uidOtto, "-n", "1", "-size", strconv.Itoa(2<<20)); got["adm.failed"] != 1 {
		t.Fatalf("an oversized request: %v", got)
	}
	if got := a.flood(t, uidOtto, "-hold", "6", "-limit", "4"); got["adm.busy"] != 2 {
		t.Fatalf("6 held connections of one operator: %v, want 2 adm.busy", got)
	}
	if code, out := a.ctl(uidOtto, "status"); code != 0 {
		t.Fatalf("status after the held connections: exit %d\n%s", code, out)
	}
}
