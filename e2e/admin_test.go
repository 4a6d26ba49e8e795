package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/policies"
)

// Operator accounts of the admin tests: real accounts in the system's
// account database (the supervisor knows callers by uid from SO_PEERCRED
// and checks each role account's uid and name against the database),
// created for the test run and removed after it (removeAccounts).
const (
	uidSam   = 61001 // secadmin
	uidSue   = 61002 // secadmin
	uidKeys  = 61003 // keyadmin
	uidAda   = 61004 // auditor
	uidOtto  = 61005 // operator
	uidCora  = 61006 // contentmgr
	uidNoone = 61007 // no role
	uidBob   = 61008 // no role yet
	uidGhost = 61009 // no account at all
)

var accounts = []struct {
	uid  int
	name string
}{{uidSam, "e2ssam"}, {uidSue, "e2ssue"}, {uidKeys, "e2skim"}, {uidAda, "e2sada"}, {uidOtto, "e2sotto"}, {uidCora, "e2scora"},
	{uidNoone, "e2snoone"}, {uidBob, "e2sbob"}}

const adminRoles = `version: 1
accounts:
  - {uid: 61001, name: e2ssam, roles: [secadmin]}
  - {uid: 61002, name: e2ssue, roles: [secadmin]}
  - {uid: 61003, name: e2skim, roles: [keyadmin]}
  - {uid: 61004, name: e2sada, roles: [auditor]}
  - {uid: 61005, name: e2sotto, roles: [operator]}
  - {uid: 61006, name: e2scora, roles: [contentmgr]}
`

var (
	makeAccounts sync.Once
	madeAccounts []string
	accountsErr  error
)

// ensureAccounts creates the test accounts once per run (useradd, no home,
// no login shell). An account left by an earlier run is taken over; a uid
// or name held by anything else fails the test.
func ensureAccounts(t testing.TB) {
	t.Helper()
	makeAccounts.Do(func() {
		for _, a := range accounts {
			if u, err := user.LookupId(strconv.Itoa(a.uid)); err == nil {
				if u.Username != a.name {
					accountsErr = fmt.Errorf("uid %d is %q on this system, not the test account %q", a.uid, u.Username, a.name)
					return
				}
				madeAccounts = append(madeAccounts, a.name)
				continue
			}
			var out []byte
			var err error
			for range 10 { // /etc/passwd may be locked by someone else's useradd
				out, err = exec.Command("useradd", "-M", "-N", "-s", "/usr/sbin/nologin", "-u", strconv.Itoa(a.uid), a.name).CombinedOutput()
				if err == nil || !strings.Contains(string(out), "lock") {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil {
				accountsErr = fmt.Errorf("useradd %s (tests run as root): %v %s", a.name, err, out)
				return
			}
			madeAccounts = append(madeAccounts, a.name)
		}
	})
	if accountsErr != nil {
		t.Fatal(accountsErr)
	}
}

// removeAccounts deletes the accounts ensureAccounts made (from TestMain).
func removeAccounts() {
	for _, n := range madeAccounts {
		if out, err := exec.Command("userdel", n).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "userdel %s: %v %s\n", n, err, out)
		}
	}
}

var buildCtl sync.Once

// ctl runs e2sctl as uid against the appliance's admin socket.
func (a *appliance) ctl(uid int, args ...string) (int, string) {
	a.t.Helper()
	buildCtl.Do(func() {
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "e2sctl"), "../cmd/e2sctl").CombinedOutput()
		if err != nil {
			a.t.Fatalf("build e2sctl: %v %s", err, out)
		}
	})
	cmd := exec.Command(filepath.Join(binDir, "e2sctl"), args...)
	cmd.Env = []string{"E2S_ADMIN_SOCKET=" + filepath.Join(a.runDir(), "admin.sock")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), NoSetGroups: true}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		a.t.Fatalf("e2sctl %v: %v", args, err)
	}
	return code, out.String()
}

// policyDir writes the embedded policy set, with roles and changes, to a
// directory every test uid can read.
func policyDir(t *testing.T, edits map[string]func(string) string) string {
	t.Helper()
	ensureAccounts(t)
	dir, err := os.MkdirTemp("", "e2sgate-policy")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	names, _ := fs.Glob(policies.Default, "*")
	for _, n := range names {
		b, _ := fs.ReadFile(policies.Default, n)
		s := string(b)
		if n == "roles.yaml" {
			s = adminRoles
		}
		if e := edits[n]; e != nil {
			s = e(s)
		}
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (a *appliance) get(path string) (int, string, error) {
	resp, err := a.client.Get(a.URL + path)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-E2S-Reason"), nil
}

// waitFor polls cond (an observable outcome, not a time) up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never happened: %s", what)
}

// Every command × every role, through the real admin socket, each e2sctl
// run under its own uid: a role can do its commands and nothing else, and
// every denial names the missing authorization and is audited.
func TestAdminCommandAuthorizations(t *testing.T) {
	pol := policyDir(t, nil)
	a := startAppliance(t, "policy_dir: "+pol+"\n")

	type role struct {
		name string
		uid  int
	}
	roles := []role{{"secadmin", uidSam}, {"keyadmin", uidKeys}, {"auditor", uidAda}, {"operator", uidOtto}, {"contentmgr", uidCora}, {"none", uidNoone}}
	all := []string{"secadmin", "keyadmin", "auditor", "operator", "contentmgr"}
	commands := []struct {
		args    []string
		auth    string
		allowed []string
	}{
		{[]string{"whoami"}, "session", all},
		{[]string{"proposals"}, "session", all},
		{[]string{"status"}, "appliance.status", []string{"operator"}},
		{[]string{"metrics"}, "appliance.status", []string{"operator"}},
		{[]string{"compartment", "restart", "nosuch"}, "appliance.control", []string{"operator"}},
		{[]string{"compartment", "stop", "nosuch"}, "appliance.control", []string{"operator"}},
		{[]string{"compartment", "start", "nosuch"}, "appliance.control", []string{"operator"}},
		{[]string{"audit", "verify"}, "audit.read", []string{"auditor"}},
		{[]string{"audit", "tail", "-n", "3"}, "audit.read", []string{"auditor"}},
		{[]string{"audit", "search", "-decision", "deny"}, "audit.read", []string{"auditor"}},
		{[]string{"explain", "pol.caller_clearance"}, "explain", []string{"secadmin", "auditor", "operator"}},
		{[]string{"policy", "show"}, "policy.read", []string{"secadmin"}},
		{[]string{"policy", "check", pol}, "policy.write", []string{"secadmin"}},
		{[]string{"policy", "propose", pol}, "policy.write", []string{"secadmin"}},
		{[]string{"policy", "rollback"}, "policy.write", []string{"secadmin"}},
		{[]string{"policy", "shadow", pol}, "policy.write", []string{"secadmin"}},
		{[]string{"policy", "shadow-report"}, "policy.read", []string{"secadmin"}},
		{[]string{"policy", "shadow-stop"}, "policy.write", []string{"secadmin"}},
		{[]string{"role", "list"}, "roles.read", []string{"secadmin"}},
		{[]string{"role", "assign", "61099", "auditor"}, "roles.write", []string{"secadmin"}},
		{[]string{"role", "revoke", "61004", "auditor"}, "roles.write", []string{"secadmin"}},
		{[]string{"key", "show"}, "keys.read", []string{"keyadmin", "auditor"}},
		{[]string{"key", "export-cert", "-"}, "keys.read", []string{"keyadmin", "auditor"}},
		{[]string{"key", "rotate"}, "keys.manage", []string{"keyadmin"}},
	}
	denials := 0
	for _, c := range commands {
		for _, r := range roles {
			allowed := false
			for _, n := range c.allowed {
				allowed = allowed || n == r.name
			}
			if !allowed {
				denials++
			}
			t.Run(strings.Join(c.args[:min(2, len(c.args))], " ")+"/"+r.name, func(t *testing.T) {
				code, out := a.ctl(r.uid, c.args...)
				if allowed && (code == 3 || strings.Contains(out, "e2sctl: denied")) {
					t.Fatalf("%s denied %v: exit %d\n%s", r.name, c.args, code, out)
				}
				// An account without a role is refused before its request
				// is read, so the answer cannot name the authorization.
				if r.name == "none" && (code != 3 || !strings.Contains(out, "your account has no role") || !strings.Contains(out, "[adm.no_role]")) {
					t.Fatalf("account without a role ran %v: exit %d\n%s", c.args, code, out)
				}
				if !allowed && r.name != "none" && (code != 3 || !strings.Contains(out, fmt.Sprintf("needs authorization %q", c.auth))) {
					t.Fatalf("%s ran %v: exit %d, want 3 naming %q\n%s", r.name, c.args, code, c.auth, out)
				}
			})
		}
	}
	// Each role holder's denial is a record; the account without a role
	// gets one record for all its refused connections.
	recs, err := auditlog.Search(filepath.Join(a.dataDir(), "audit", "admin.log"), auditlog.Filter{Decision: "deny", Reason: "adm.authorization_missing"}, 0)
	noRole, _ := auditlog.Search(filepath.Join(a.dataDir(), "audit", "admin.log"), auditlog.Filter{Decision: "deny", Reason: "adm.no_role"}, 0)
	if err != nil || len(recs) != denials-len(commands) || len(noRole) < 1 || len(noRole) > 2 || noRole[0].User != fmt.Sprintf("uid:%d", uidNoone) {
		t.Fatalf("%d denials of role holders audited, want %d; %d records of the account without a role, want 1 or 2 (%v)", len(recs), denials-len(commands), len(noRole), err)
	}
	if r := recs[0]; !strings.HasPrefix(r.User, "uid:") || !strings.HasPrefix(r.Detail, "missing authorization ") {
		t.Fatalf("denial record %+v", r)
	}
}

// A policy change: bad sets are refused with the reason and the old set
// keeps deciding; a good one needs two people and then activates at once,
// under load, with no call failing or decided by anything but the old or
// the new set; rollback brings the old one back.
func TestPolicyLifecycle(t *testing.T) {
	pol := policyDir(t, nil)
	a := startAppliance(t, "policy_dir: "+pol+"\n")
	if code, _, err := a.get("/cgi-bin/purchasing/catalogue"); err != nil || code != 200 {
		t.Fatalf("catalogue before: %d %v", code, err)
	}

	bad := []struct {
		name  string
		edits map[string]func(string) string
		says  string
	}{
		{"syntax error", map[string]func(string) string{"gate.rego": func(s string) string {
			return strings.Replace(s, "default decision :=", "default decision =:", 1)
		}}, "rego_parse_error"},
		{"failing test", map[string]func(string) string{"gate_test.rego": func(s string) string {
			return s + "\ntest_always_fails if {\n\tfalse\n}\n"
		}}, "test_always_fails"},
		{"unknown compartment", map[string]func(string) string{"registry.yaml": func(s string) string {
			return strings.Replace(s, "target: purchasing", "target: billing", 1)
		}}, `is not a compartment`},
	}
	for _, b := range bad {
		t.Run("refused "+b.name, func(t *testing.T) {
			dir := policyDir(t, b.edits)
			code, out := a.ctl(uidSam, "policy", "check", dir)
			if code != 1 || !strings.Contains(out, b.says) {
				t.Fatalf("check: exit %d\n%s", code, out)
			}
			code, out = a.ctl(uidSam, "policy", "propose", dir)
			if code != 1 || !strings.Contains(out, "policy set refused") || !strings.Contains(out, b.says) {
				t.Fatalf("propose: exit %d\n%s", code, out)
			}
			if c, _, err := a.get("/cgi-bin/purchasing/catalogue"); err != nil || c != 200 {
				t.Fatalf("old policy no longer enforced: %d %v", c, err)
			}
		})
	}

	// The good change: only purchasing may read the catalogue.
	next := policyDir(t, map[string]func(string) string{"registry.yaml": func(s string) string {
		return strings.Replace(s, "    handler: catalogue\n    methods: [GET]\n    callers: [outside]", "    handler: catalogue\n    methods: [GET]\n    callers: [purchasing]", 1)
	}})
	code, out := a.ctl(uidSam, "policy", "check", next)
	if code != 0 || !strings.Contains(out, `"caller": "outside"`) || !strings.Contains(out, `"before": "allow (pol.allowed)"`) || !strings.Contains(out, `"after": "deny (pol.caller_not_permitted)"`) {
		t.Fatalf("check of the good change: exit %d\n%s", code, out)
	}
	// Shadow: the candidate beside the active set on live calls, not enforced.
	if code, out := a.ctl(uidSam, "policy", "shadow", next); code != 0 {
		t.Fatalf("shadow: exit %d\n%s", code, out)
	}
	for range 3 {
		if c, _, _ := a.get("/cgi-bin/purchasing/catalogue"); c != 200 {
			t.Fatalf("shadow policy enforced: %d", c)
		}
	}
	a.get("/cgi-bin/purchasing/basket") // GET: refused by the method filter under both sets
	waitFor(t, "shadow sees the calls", func() bool {
		_, out := a.ctl(uidSue, "policy", "shadow-report")
		return strings.Count(out, `"candidate": "deny (pol.caller_not_permitted)"`) == 3 && strings.Contains(out, `"calls": 4`)
	})
	// The secadmin sees which calls would be decided differently, not whose:
	// the audit trail itself stays the auditor's.
	if _, out := a.ctl(uidSue, "policy", "shadow-report"); strings.Contains(out, "req_id") || strings.Contains(out, `"user"`) {
		t.Fatalf("shadow report leaks audit details:\n%s", out)
	}
	if code, out := a.ctl(uidSam, "policy", "shadow-stop"); code != 0 || !strings.Contains(out, `"active": "allow"`) {
		t.Fatalf("shadow-stop: exit %d\n%s", code, out)
	}

	code, out = a.ctl(uidSam, "policy", "propose", next)
	m := regexp.MustCompile(`proposal ([0-9a-f]+):`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("propose: exit %d\n%s", code, out)
	}
	id := m[1]
	if code, out := a.ctl(uidSam, "approve", id); code != 3 || !strings.Contains(out, "adm.same_person") {
		t.Fatalf("proposer approved: exit %d\n%s", code, out)
	}
	if code, out := a.ctl(uidAda, "approve", id); code != 3 || !strings.Contains(out, `needs authorization "policy.write"`) {
		t.Fatalf("auditor approved: exit %d\n%s", code, out)
	}
	if c, _, _ := a.get("/cgi-bin/purchasing/catalogue"); c != 200 {
		t.Fatalf("activated before approval: %d", c)
	}

	// Load while the second person approves.
	var stop atomic.Bool
	var old, new, other atomic.Int64
	var seen sync.Map
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				code, reason, err := a.get("/cgi-bin/purchasing/catalogue")
				switch {
				case err == nil && code == 200:
					old.Add(1)
				case err == nil && code == 403 && reason == "pol.caller_not_permitted":
					new.Add(1)
				default:
					other.Add(1)
					seen.Store(fmt.Sprintf("%d %s %v", code, reason, err), true)
				}
			}
		}()
	}
	waitFor(t, "load running", func() bool { return old.Load() > 20 })
	code, out = a.ctl(uidSue, "approve", id)
	if code != 0 {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("approve by a second secadmin: exit %d\n%s", code, out)
	}
	waitFor(t, "new policy in force", func() bool { return new.Load() > 20 })
	stop.Store(true)
	wg.Wait()
	if other.Load() != 0 {
		var bad []string
		seen.Range(func(k, _ any) bool { bad = append(bad, k.(string)); return true })
		t.Fatalf("%d calls failed or were decided otherwise during activation: %v", other.Load(), bad)
	}
	t.Logf("during activation: %d calls under the old set, %d under the new, 0 otherwise", old.Load(), new.Load())
	if c, r, _ := a.get("/cgi-bin/purchasing/catalogue"); c != 403 || r != "pol.caller_not_permitted" {
		t.Fatalf("after activation: %d %s", c, r)
	}
	if code, out := a.ctl(uidSam, "policy", "show"); code != 0 || !strings.Contains(out, `"active": 1`) {
		t.Fatalf("policy show: exit %d\n%s", code, out)
	}
	// A gate agent that dies and is restarted enforces the active version.
	st, _ := a.status()
	syscall.Kill(st.GatePid, syscall.SIGKILL)
	waitFor(t, "gate agent back", func() bool {
		s, _ := a.status()
		_, r, _ := a.get("/cgi-bin/purchasing/catalogue")
		return s.GatePid != st.GatePid && r == "pol.caller_not_permitted"
	})

	// Rollback restores the set approved before, once a second person
	// approves it: it is an activation too.
	code, out = a.ctl(uidSue, "policy", "rollback")
	rb := regexp.MustCompile(`proposal ([0-9a-f]+):`).FindStringSubmatch(out)
	if code != 0 || rb == nil {
		t.Fatalf("rollback proposal: exit %d\n%s", code, out)
	}
	if c, _, _ := a.get("/cgi-bin/purchasing/catalogue"); c == 200 {
		t.Fatal("rollback took effect before its approval")
	}
	if code, out := a.ctl(uidSue, "approve", rb[1]); code != 3 || !strings.Contains(out, "adm.same_person") {
		t.Fatalf("proposer approved her rollback: exit %d\n%s", code, out)
	}
	if code, out := a.ctl(uidSam, "approve", rb[1]); code != 0 || !strings.Contains(out, `"active": 0`) {
		t.Fatalf("rollback approved: exit %d\n%s", code, out)
	}
	waitFor(t, "old policy back", func() bool { c, _, _ := a.get("/cgi-bin/purchasing/catalogue"); return c == 200 })

	if code, out := a.ctl(uidOtto, "status"); code != 0 || !strings.Contains(out, "gate_pid") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
}

// The operator stops and starts a compartment: while stopped its calls are
// refused (503 gate.target_unavailable), it is not restarted, and the stop
// is no crash.
func TestOperatorStopsAndStarts(t *testing.T) {
	a := startAppliance(t, "policy_dir: "+policyDir(t, nil)+"\n")
	before, _ := a.status()
	if code, out := a.ctl(uidOtto, "compartment", "stop", "purchasing"); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, out)
	}
	waitFor(t, "purchasing stopped", func() bool {
		st, _ := a.status()
		c, r, _ := a.get("/cgi-bin/purchasing/catalogue")
		return st.Compartments["purchasing"].State == "stopped" && c == 503 && r == "gate.target_unavailable"
	})
	if code, out := a.ctl(uidOtto, "compartment", "start", "purchasing"); code != 0 {
		t.Fatalf("start: exit %d\n%s", code, out)
	}
	waitFor(t, "purchasing serving again", func() bool { c, _, _ := a.get("/cgi-bin/purchasing/catalogue"); return c == 200 })
	after, _ := a.status()
	if after.Compartments["purchasing"].Restarts != before.Compartments["purchasing"].Restarts {
		t.Fatalf("an operator's stop counted as a crash: %d → %d", before.Compartments["purchasing"].Restarts, after.Compartments["purchasing"].Restarts)
	}
	if code, _ := a.ctl(uidOtto, "compartment", "start", "purchasing"); code != 1 {
		t.Fatalf("start of a running compartment: exit %d", code)
	}
}

// Audit verify through the socket and offline on a copy; a tampered copy
// fails naming the first bad record; explain of a denial's audit record.
func TestAuditVerifyAndExplain(t *testing.T) {
	pol := policyDir(t, nil)
	a := startAppliance(t, "policy_dir: "+pol+"\n")
	for range 5 {
		a.get("/cgi-bin/purchasing/catalogue")
	}
	a.get("/cgi-bin/keyhandler/sign-offer") // denied: pol.caller_clearance

	code, out := a.ctl(uidAda, "audit", "verify")
	if code != 0 || strings.Count(out, "OK ") != 2 {
		t.Fatalf("online verify: exit %d\n%s", code, out)
	}
	code, out = a.ctl(uidAda, "audit", "search", "-decision", "deny", "-compartment", "outside")
	if code != 0 || !strings.Contains(out, `"reason":"pol.caller_clearance"`) || strings.Contains(out, `"decision":"allow"`) {
		t.Fatalf("search: exit %d\n%s", code, out)
	}
	reqID := regexp.MustCompile(`"req_id":"([0-9a-f]+)"[^\n]*pol.caller_clearance`).FindStringSubmatch(out)
	if reqID == nil {
		t.Fatalf("no req_id in\n%s", out)
	}
	code, out = a.ctl(uidAda, "explain", reqID[1])
	if code != 0 || !strings.Contains(out, "e2s.dominates(input.caller_label") || !strings.Contains(out, `"caller_label": "restricted:web"`) {
		t.Fatalf("explain record: exit %d\n%s", code, out)
	}

	// Metrics, from the same records: the operator's e2sctl metrics and a
	// root-only socket.
	waitFor(t, "metrics count the calls", func() bool {
		_, out := a.ctl(uidOtto, "metrics")
		return strings.Contains(out, `e2sgate_gate_calls_total{decision="allow",script="purchasing/catalogue"} 5`) &&
			strings.Contains(out, `e2sgate_policy_rule_hits_total{rule="pol.caller_clearance"} 1`) &&
			strings.Contains(out, `e2sgate_admin_commands_total{command="audit.verify",decision="allow"} 1`)
	})
	_, out = a.ctl(uidOtto, "metrics")
	for _, want := range []string{`e2sgate_registry_entry_unused{script="payment/authorize"} 1`, `e2sgate_compartment_restarts_total{compartment="payment"} 0`,
		`e2sgate_gate_call_seconds_bucket{decision="deny"`, `e2sgate_audit_lag_seconds_count`} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if code, out := a.ctl(uidAda, "metrics"); code != 3 {
		t.Fatalf("auditor read metrics: exit %d\n%s", code, out)
	}
	sock := filepath.Join(a.runDir(), "metrics.sock")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Fatalf("metrics socket not root-only: %v %v", fi, err)
	}
	mc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := mc.Get("http://metrics/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("metrics socket: %v %v", resp, err)
	}
	resp.Body.Close()

	// Offline, on a copy, after the appliance stopped (final checkpoint).
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	cp := t.TempDir()
	for _, f := range []string{"audit.log", "audit.log.hashes", "audit.log.checkpoints", "audit.pub"} {
		b, err := os.ReadFile(filepath.Join(a.dataDir(), "audit", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(cp, f), b, 0o600)
	}
	code, out = a.ctl(0, "audit", "verify", "-log", filepath.Join(cp, "audit.log"), "-pubkey", filepath.Join(cp, "audit.pub"))
	if code != 0 || !strings.Contains(out, " 0 not yet signed") {
		t.Fatalf("offline verify: exit %d\n%s", code, out)
	}
	b, _ := os.ReadFile(filepath.Join(cp, "audit.log"))
	lines := strings.SplitAfter(string(b), "\n")
	lines[2] = strings.Replace(lines[2], `"status":200`, `"status":201`, 1)
	os.WriteFile(filepath.Join(cp, "audit.log"), []byte(strings.Join(lines, "")), 0o600)
	code, out = a.ctl(0, "audit", "verify", "-log", filepath.Join(cp, "audit.log"), "-pubkey", filepath.Join(cp, "audit.pub"))
	if code != 4 || !strings.Contains(out, "first bad: record 2 (line 3)") {
		t.Fatalf("tampered copy: exit %d\n%s", code, out)
	}
}

// Audit storage full: calls are refused (503 gate.audit_unavailable) and
// served again once there is space. The audit dir is a small tmpfs, mounted
// over the running appliance's; the gate agent is killed so that the
// supervisor restarts it on the tmpfs.
func TestAuditFullFailsClosed(t *testing.T) {
	a := startAppliance(t, "")
	auditDir := filepath.Join(a.dataDir(), "audit")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", auditDir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (tests run as root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", auditDir).Run() })
	st, _ := a.status()
	syscall.Kill(st.GatePid, syscall.SIGKILL)
	waitFor(t, "gate agent restarted on the tmpfs", func() bool {
		s, _ := a.status()
		c, _, _ := a.get("/cgi-bin/purchasing/catalogue")
		return s.GatePid != st.GatePid && c == 200
	})
	f, err := os.Create(filepath.Join(auditDir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	// Records still fit into the files' last allocated pages for a while;
	// the first that does not is refused, and so is every call after it.
	served := 0
	for {
		c, r, err := a.get("/cgi-bin/purchasing/catalogue")
		if err == nil && c == 503 && r == "gate.audit_full" {
			break
		}
		if err != nil || c != 200 || served > 500 {
			t.Fatalf("with the audit disk full, after %d calls: %d %s %v", served, c, r, err)
		}
		served++
	}
	for range 3 {
		if c, r, err := a.get("/cgi-bin/purchasing/catalogue"); err != nil || c != 503 || r != "gate.audit_full" {
			t.Fatalf("with the audit disk full: %d %s %v", c, r, err)
		}
	}
	t.Logf("disk full: %d calls fitted into allocated pages, then every call refused", served)
	os.Remove(filepath.Join(auditDir, "filler"))
	if c, r, err := a.get("/cgi-bin/purchasing/catalogue"); err != nil || c != 200 {
		t.Fatalf("once space is free: %d %s %v", c, r, err)
	}
}
