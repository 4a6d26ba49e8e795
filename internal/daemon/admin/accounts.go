package admin

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/e2sgate/e2sgate/internal/durable"
)

// The install-time step that gives the appliance its first operators
// (`e2sgated accounts init`): root names people and their roles, the
// accounts are created (or the existing ones mapped), and the role book is
// written once. Afterwards roles change only through e2sctl role
// assign|revoke, proposed by one secadmin and approved by another.

// Person is one person and the roles they hold.
type Person struct {
	Name  string
	Roles []string
}

// personName is what useradd accepts and a role book name may be.
var personName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// TwoPersonRoles are the roles with two-person acts: each needs a second
// holder before those acts can be approved.
var TwoPersonRoles = []string{"secadmin", "keyadmin"}

// ParsePeople reads a list of people: arguments NAME=ROLE[,ROLE...] and
// the lines of a file in the same form (# starts a comment). A name may
// appear once.
func ParsePeople(args []string, file []byte) ([]Person, error) {
	var items []string
	for i, line := range strings.Split(string(file), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line != "" {
			items = append(items, fmt.Sprintf("line %d: %s", i+1, line))
		}
	}
	for _, a := range args {
		items = append(items, "argument: "+a)
	}
	var out []Person
	for _, it := range items {
		where, spec, _ := strings.Cut(it, ": ")
		name, roles, ok := strings.Cut(spec, "=")
		name = strings.TrimSpace(name)
		if !ok || !personName.MatchString(name) {
			return nil, fmt.Errorf("%w: %s: %q: write NAME=ROLE[,ROLE...], NAME a login name (lower case, digits, _ or -)", ErrBadRequest, where, spec)
		}
		if slices.ContainsFunc(out, func(p Person) bool { return p.Name == name }) {
			return nil, fmt.Errorf("%w: %s: %s is listed twice; give one line with all the person's roles", ErrBadRequest, where, name)
		}
		p := Person{Name: name}
		for _, r := range strings.Split(roles, ",") {
			r = strings.TrimSpace(r)
			if !slices.Contains(Roles, r) {
				return nil, fmt.Errorf("%w: %s: %s: unknown role %q (one of %s)", ErrBadRequest, where, name, r, strings.Join(Roles, ", "))
			}
			if !slices.Contains(p.Roles, r) {
				p.Roles = append(p.Roles, r)
			}
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no people given; e.g. e2sgated accounts init sam=secadmin sue=secadmin kim=keyadmin ada=auditor otto=operator", ErrBadRequest)
	}
	return out, nil
}

// InitOptions is what InitAccounts needs; the system calls are passed in
// so that tests can see what it does.
type InitOptions struct {
	Path   string   // the role book, data_dir/admin/roles.yaml
	People []Person // who holds which roles
	// Force replaces a role book that already names accounts; without it
	// such a book is left alone.
	Force bool
	// Lookup gives the uid of a login name, or an error wrapping
	// ErrNoSuchAccount.
	Lookup func(name string) (int, error)
	// Create makes a login account with no password, home or shell
	// (useradd); comment describes it.
	Create func(name, comment string) error
	// Reserved are uids the appliance itself runs as (compartments, the
	// gate agent): never a person's.
	Reserved map[int]string
}

// InitReport says what InitAccounts did.
type InitReport struct {
	Accounts []Account
	Created  []string // names of the accounts made
	Replaced []Account
	Warnings []string
}

// InitAccounts creates or maps the accounts of o.People and writes the role
// book (0600, in a 0700 directory): once, unless o.Force. Nothing is
// created when the book may not be written.
func InitAccounts(o InitOptions) (*InitReport, error) {
	old, err := os.ReadFile(o.Path)
	var prior []Account
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("role book %s: %w", o.Path, err)
	default:
		if prior, err = ParseRoles(old); err != nil && !o.Force {
			return nil, fmt.Errorf("role book %s: %w; fix it or pass -force to replace it", o.Path, err)
		}
		if len(prior) > 0 && !o.Force {
			names := make([]string, len(prior))
			for i, a := range prior {
				names[i] = a.Name
			}
			return nil, fmt.Errorf("%w: %s holds %s; roles change with e2sctl role assign|revoke (two secadmins), or pass -force to replace the book",
				ErrBookExists, o.Path, strings.Join(names, ", "))
		}
	}
	// Check every name before creating any account.
	uids := map[string]int{}
	for _, p := range o.People {
		uid, err := o.Lookup(p.Name)
		switch {
		case errors.Is(err, ErrNoSuchAccount):
			continue
		case err != nil:
			return nil, fmt.Errorf("account %s: %w", p.Name, err)
		case uid == 0:
			return nil, fmt.Errorf("%w: %s is root; root installs and holds no role, name a person's own account", ErrBadRequest, p.Name)
		case o.Reserved[uid] != "":
			return nil, fmt.Errorf("%w: %s (uid %d) is the appliance's %s account, not a person's", ErrBadRequest, p.Name, uid, o.Reserved[uid])
		}
		uids[p.Name] = uid
	}
	rep := &InitReport{Replaced: prior}
	for _, p := range o.People {
		if _, ok := uids[p.Name]; ok {
			continue
		}
		if err := o.Create(p.Name, "e2sgate "+strings.Join(p.Roles, " ")); err != nil {
			return rep, fmt.Errorf("create account %s: %w", p.Name, err)
		}
		uid, err := o.Lookup(p.Name)
		if err != nil {
			return rep, fmt.Errorf("account %s after creating it: %w", p.Name, err)
		}
		if o.Reserved[uid] != "" {
			return rep, fmt.Errorf("account %s got uid %d, the appliance's %s: remove it (userdel %s) and create it with another uid", p.Name, uid, o.Reserved[uid], p.Name)
		}
		uids[p.Name] = uid
		rep.Created = append(rep.Created, p.Name)
	}
	for _, p := range o.People {
		rep.Accounts = append(rep.Accounts, Account{UID: uids[p.Name], Name: p.Name, Roles: slices.Clone(p.Roles)})
	}
	out, err := yaml.Marshal(roleFile{Version: 1, Accounts: rep.Accounts})
	if err != nil {
		return rep, err
	}
	out = append([]byte("# The role book, written by e2sgated accounts init; roles change with\n# e2sctl role assign|revoke (proposed by one secadmin, approved by another).\n"), out...)
	if _, err := ParseRoles(out); err != nil { // two names with one uid, say
		return rep, fmt.Errorf("the accounts do not make a role book: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o700); err != nil {
		return rep, fmt.Errorf("role book: %w", err)
	}
	if err := durable.WriteFile(o.Path, out, 0o600); err != nil {
		return rep, fmt.Errorf("role book: %w", err)
	}
	for _, r := range TwoPersonRoles {
		n := 0
		for _, a := range rep.Accounts {
			if slices.Contains(a.Roles, r) {
				n++
			}
		}
		if n < 2 {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s has %d holder(s); its two-person acts need a second one (e2sgated accounts init -force with both, or e2sctl role assign by two secadmins)", r, n))
		}
	}
	return rep, nil
}

// Usage is what InitAccounts' caller prints: who holds what and how each
// person runs e2sctl.
func (r *InitReport) Usage(ctl string) string {
	var b bytes.Buffer
	for _, a := range r.Accounts {
		made := "mapped"
		if slices.Contains(r.Created, a.Name) {
			made = "created (no password: log in by key, or root runs runuser)"
		}
		fmt.Fprintf(&b, "  %-12s uid %-6d %-28s %s\n", a.Name, a.UID, strings.Join(a.Roles, ","), made)
	}
	b.WriteString("\nEach person runs e2sctl as their own account, e.g.\n")
	for _, a := range r.Accounts {
		fmt.Fprintf(&b, "  runuser -u %s -- %s whoami\n", a.Name, ctl)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "note: %s\n", w)
	}
	return b.String()
}
