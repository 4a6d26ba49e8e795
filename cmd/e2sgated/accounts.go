package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/daemon/admin"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
)

const accountsUsage = `usage: e2sgated accounts init [-config FILE] [-file LIST] [-force] [NAME=ROLE[,ROLE...] ...]

Creates (useradd, no password) or maps the accounts of the people named and
writes the role book, data_dir/admin/roles.yaml (0600), once: a book that
already names accounts is left alone unless -force. Run it as root at
install time, while e2sgated is stopped. LIST holds one NAME=ROLE[,ROLE...]
a line. Roles: ` + "secadmin, keyadmin, auditor, operator, contentmgr" + `.

  e2sgated accounts init sam=secadmin sue=secadmin kim=keyadmin ada=auditor otto=operator
`

// accounts is "e2sgated accounts init": the first administrators, without
// hand edits (docs/OPERATIONS.md "First operators").
func accounts(args []string) error {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprint(os.Stderr, accountsUsage)
		return errors.New("accounts: the only subcommand is init")
	}
	fl := flag.NewFlagSet("accounts init", flag.ContinueOnError)
	fl.Usage = func() { fmt.Fprint(os.Stderr, accountsUsage) }
	cfgPath := fl.String("config", "", "configuration file (YAML); empty: embedded defaults")
	list := fl.String("file", "", "file of NAME=ROLE[,ROLE...] lines")
	force := fl.Bool("force", false, "replace a role book that already names accounts")
	if err := fl.Parse(args[1:]); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("accounts init creates accounts and writes the role book: run it as root")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	var file []byte
	if *list != "" {
		if file, err = os.ReadFile(*list); err != nil {
			return fmt.Errorf("accounts init: %w", err)
		}
	}
	people, err := admin.ParsePeople(fl.Args(), file)
	if err != nil {
		return err
	}
	sock := filepath.Join(cfg.RunDir, "admin.sock")
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("e2sgated is running (%s answers): stop it first (Ctrl-C, or systemctl stop e2sgated), run accounts init, then start it again; it reads the role book at start", sock)
	}
	reserved := map[int]string{cfg.Gate.UID: "gate agent"}
	for n, c := range cfg.Compartments {
		reserved[c.UID] = n + " compartment"
	}
	book := filepath.Join(cfg.DataDir, "admin", "roles.yaml")
	rep, err := admin.InitAccounts(admin.InitOptions{Path: book, People: people, Force: *force,
		Lookup: lookupAccount, Create: useradd, Reserved: reserved})
	if rep != nil && len(rep.Created) > 0 && err != nil {
		fmt.Fprintf(os.Stderr, "accounts created before the failure: %s\n", strings.Join(rep.Created, ", "))
	}
	if err != nil {
		return err
	}
	if err := auditInit(cfg, rep); err != nil {
		return fmt.Errorf("role book written, but %w", err)
	}
	ctl := "e2sctl"
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), "e2sctl"); fileExists(p) {
			ctl = p
		}
	}
	fmt.Printf("role book %s written:\n%s", book, rep.Usage(ctl))
	fmt.Println("Start e2sgated now; it reads the role book at start. See docs/OPERATIONS.md \"First operators\".")
	return nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func lookupAccount(name string) (int, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("%w: %s", admin.ErrNoSuchAccount, name)
		}
		return 0, err
	}
	return strconv.Atoi(u.Uid)
}

// useradd makes a login account without password, home or login shell:
// a person logs in by key (the VM's sshd) or root runs runuser for them.
func useradd(name, comment string) error {
	var out []byte
	var err error
	for range 10 { // /etc/passwd may be locked by another useradd
		out, err = exec.Command("useradd", "-M", "-N", "-s", "/usr/sbin/nologin", "-c", comment, name).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lock") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("useradd %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// auditInit records the new role book in the admin audit log, where every
// later role change is recorded too.
func auditInit(cfg *config.Config, rep *admin.InitReport) error {
	dir := filepath.Join(cfg.DataDir, "audit")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("admin audit log: %w", err)
	}
	l, err := auditlog.OpenWith(filepath.Join(dir, "admin.log"), auditlog.Options{SyslogTag: "e2sgate-admin"})
	if err != nil {
		return fmt.Errorf("admin audit log: %w", err)
	}
	var who []string
	for _, a := range rep.Accounts {
		who = append(who, fmt.Sprintf("%s(uid %d): %s", a.Name, a.UID, strings.Join(a.Roles, ",")))
	}
	detail := "role book written: " + strings.Join(who, "; ")
	if len(rep.Created) > 0 {
		detail += "; accounts created: " + strings.Join(rep.Created, ", ")
	}
	if len(rep.Replaced) > 0 {
		detail += fmt.Sprintf("; replaced a book of %d account(s) (-force)", len(rep.Replaced))
	}
	id := make([]byte, 8)
	rand.Read(id)
	err = l.Append(auditlog.Record{Time: time.Now().UTC(), ReqID: hex.EncodeToString(id), Caller: "admin", Script: "e2sgated accounts init", User: "uid:0(root)",
		Decision: "allow", Reason: "adm.accounts_init", Detail: detail})
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("admin audit log: %w", err)
	}
	return nil
}
