package e2e

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// restart starts e2sgated again on the appliance's config and data, after
// stop, and waits until every compartment runs.
func (a *appliance) restart(t *testing.T) {
	t.Helper()
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(a.runDir(), "status.json")) // not the stopped run's
	a.cmd = exec.Command(filepath.Join(binDir, "e2sgated"), "-config", filepath.Join(a.dir, "e2sgate.yaml"))
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	a.done = make(chan error, 1)
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	a.waitRunning(nil)
}

// accountsInit runs e2sgated accounts init on the appliance's config.
func (a *appliance) accountsInit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "e2sgated"), append([]string{"accounts", "init", "-config", filepath.Join(a.dir, "e2sgate.yaml")}, args...)...)
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

func uidOf(t *testing.T, name string) int {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	return uid
}

// A first administrator without hand edits (issue 13 item 6): on a fresh
// appliance root runs e2sgated accounts init with a list of people; one
// account is created, one that exists is mapped, the role book is written
// 0600 and audited, never over a book that names accounts (nor while the
// appliance runs); after a restart each person's e2sctl works by role.
func TestAccountsInit(t *testing.T) {
	ensureAccounts(t) // a.ctl as e2sada below builds e2sctl beside e2sgated
	const made, mapped = "e2sinit-op", "e2sinit-aud"
	for _, n := range []string{made, mapped} {
		if _, err := user.Lookup(n); err == nil {
			t.Fatalf("account %s exists before the test: remove it (userdel %s)", n, n)
		}
	}
	t.Cleanup(func() {
		for _, n := range []string{made, mapped} {
			if _, err := user.Lookup(n); err == nil {
				if out, err := exec.Command("userdel", n).CombinedOutput(); err != nil {
					t.Errorf("userdel %s: %v %s", n, err, out)
				}
			}
		}
	})
	if out, err := exec.Command("useradd", "-M", "-N", "-s", "/usr/sbin/nologin", mapped).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v %s", mapped, err, out)
	}
	mappedUID := uidOf(t, mapped)

	a := startAppliance(t, "")
	book := filepath.Join(a.dataDir(), "admin", "roles.yaml")
	a.ctl(uidAda, "whoami") // builds e2sctl, which accounts init names in its output

	t.Run("refused while the appliance runs", func(t *testing.T) {
		code, out := a.accountsInit(t, made+"=operator")
		if code != 1 || !strings.Contains(out, "e2sgated is running") || !strings.Contains(out, "stop it first") {
			t.Fatalf("exit %d\n%s", code, out)
		}
		if _, err := user.Lookup(made); err == nil {
			t.Fatal("the refused init created an account")
		}
	})

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	t.Run("init creates, maps and writes the book", func(t *testing.T) {
		list := filepath.Join(t.TempDir(), "people")
		os.WriteFile(list, []byte("# first operators\n"+mapped+"=auditor\n"), 0o600)
		code, out := a.accountsInit(t, "-file", list, made+"=operator")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, out)
		}
		for _, want := range []string{made, "created", mapped, "mapped", "runuser -u " + made + " -- " + filepath.Join(binDir, "e2sctl") + " whoami",
			"secadmin has 0 holder(s)"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if uidOf(t, mapped) != mappedUID {
			t.Fatal("the mapped account changed uid")
		}
		fi, err := os.Stat(book)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("role book %v %v, want 0600", fi, err)
		}
		b, _ := os.ReadFile(book)
		for _, want := range []string{"uid: " + strconv.Itoa(uidOf(t, made)), "name: " + made, "- operator", "uid: " + strconv.Itoa(mappedUID), "- auditor"} {
			if !strings.Contains(string(b), want) {
				t.Fatalf("role book lacks %q:\n%s", want, b)
			}
		}
	})

	t.Run("a book that names accounts is kept", func(t *testing.T) {
		before, _ := os.ReadFile(book)
		code, out := a.accountsInit(t, mapped+"=secadmin")
		if code != 1 || !strings.Contains(out, "already names accounts") || !strings.Contains(out, "-force") {
			t.Fatalf("exit %d\n%s", code, out)
		}
		if after, _ := os.ReadFile(book); string(after) != string(before) {
			t.Fatalf("the book changed:\n%s", after)
		}
	})

	a.restart(t)
	op, aud := uidOf(t, made), mappedUID
	t.Run("each person's e2sctl works by role", func(t *testing.T) {
		for _, tt := range []struct {
			uid  int
			args []string
			code int
		}{
			{op, []string{"status"}, 0},
			{aud, []string{"audit", "verify"}, 0},
			{aud, []string{"explain", "pol.caller_clearance"}, 0},
			{op, []string{"audit", "verify"}, 3},
			{aud, []string{"compartment", "restart", "purchasing"}, 3},
		} {
			if code, out := a.ctl(tt.uid, tt.args...); code != tt.code {
				t.Errorf("uid %d e2sctl %v: exit %d, want %d\n%s", tt.uid, tt.args, code, tt.code, out)
			}
		}
	})

	t.Run("audited", func(t *testing.T) {
		recs := a.adminRecords(t, auditlog.Filter{})
		for _, r := range recs {
			if r.Script == "e2sgated accounts init" && r.Reason == "adm.accounts_init" && r.User == "uid:0(root)" &&
				strings.Contains(r.Detail, made+"(uid "+strconv.Itoa(op)+"): operator") && strings.Contains(r.Detail, "accounts created: "+made) {
				return
			}
		}
		t.Fatalf("no accounts init record among %d admin records", len(recs))
	})
}
