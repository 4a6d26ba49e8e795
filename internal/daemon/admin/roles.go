package admin

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"gopkg.in/yaml.v3"
)

// Roles known to the appliance (docs/OPERATIONS.md, roles).
var Roles = []string{"secadmin", "keyadmin", "auditor", "operator", "contentmgr"}

// Account is one operator: one person, one uid, known to the system's
// account database under the same name.
type Account struct {
	UID   int      `yaml:"uid" json:"uid"`
	Name  string   `yaml:"name" json:"name"`
	Roles []string `yaml:"roles" json:"roles"`
}

type roleFile struct {
	Version  int       `yaml:"version"`
	Accounts []Account `yaml:"accounts"`
}

// RoleBook is the uid → roles map, kept in a YAML file that only root can
// write; it changes only through approved role assignments.
type RoleBook struct {
	path string
	mu   sync.Mutex
	accs []Account
}

// ParseRoles validates role data.
func ParseRoles(data []byte) ([]Account, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f roleFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRoles, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("%w: version %d is not supported; write version: 1", ErrBadRoles, f.Version)
	}
	seen := map[int]bool{}
	names := map[string]int{}
	for i, a := range f.Accounts {
		if a.UID <= 0 {
			return nil, fmt.Errorf("%w: account %d: uid %d (root and negative uids hold no role)", ErrBadRoles, i, a.UID)
		}
		if seen[a.UID] {
			return nil, fmt.Errorf("%w: uid %d listed twice", ErrBadRoles, a.UID)
		}
		seen[a.UID] = true
		if a.Name == "" {
			return nil, fmt.Errorf("%w: uid %d has no name; write the person's account name as the system knows it", ErrBadRoles, a.UID)
		}
		if other, ok := names[a.Name]; ok {
			return nil, fmt.Errorf("%w: %q is listed under uid %d and uid %d: %w", ErrBadRoles, a.Name, other, a.UID, ErrSecondAccount)
		}
		names[a.Name] = a.UID
		for _, r := range a.Roles {
			if !slices.Contains(Roles, r) {
				return nil, fmt.Errorf("%w: uid %d: unknown role %q (one of %v)", ErrBadRoles, a.UID, r, Roles)
			}
		}
	}
	return f.Accounts, nil
}

// OpenRoles reads the role book at path; if it does not exist it is
// created from seed (the policy set's roles.yaml).
func OpenRoles(path string, seed []byte) (*RoleBook, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		data = seed
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("role book: %w", err)
		}
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			return nil, fmt.Errorf("role book: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("role book: %w", err)
	}
	accs, err := ParseRoles(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &RoleBook{path: path, accs: accs}, nil
}

// Accounts returns a copy of every account.
func (b *RoleBook) Accounts() []Account {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Account, len(b.accs))
	for i, a := range b.accs {
		out[i] = Account{UID: a.UID, Name: a.Name, Roles: slices.Clone(a.Roles)}
	}
	return out
}

// Lookup returns the account of uid.
func (b *RoleBook) Lookup(uid int) (Account, bool) {
	for _, a := range b.Accounts() {
		if a.UID == uid {
			return a, true
		}
	}
	return Account{}, false
}

// Data is the role book as OPA data: uid (string) → {name, roles}.
func (b *RoleBook) Data() map[string]any {
	m := map[string]any{}
	for _, a := range b.Accounts() {
		rs := make([]any, len(a.Roles))
		for i, r := range a.Roles {
			rs[i] = r
		}
		m[strconv.Itoa(a.UID)] = map[string]any{"name": a.Name, "roles": rs}
	}
	return m
}

// Person checks that uid may be bound to the person name (the name the
// system's account database gives uid): the name is not in the book under
// another uid, and the uid is not in the book under another name.
func (b *RoleBook) Person(uid int, name string) error {
	for _, a := range b.Accounts() {
		switch {
		case a.UID == uid && a.Name != name:
			return fmt.Errorf("%w: uid %d is %q in the role book, not %q", ErrAccountMismatch, uid, a.Name, name)
		case a.UID != uid && a.Name == name:
			return fmt.Errorf("%w: %s already holds roles as uid %d; assign roles to that account, not to uid %d", ErrSecondAccount, name, a.UID, uid)
		}
	}
	return nil
}

// Change assigns (add) or revokes a role of the person name at uid and
// saves the book. A person has one uid (see Person).
func (b *RoleBook) Change(uid int, name, role string, add bool) error {
	if uid <= 0 || name == "" || !slices.Contains(Roles, role) {
		return fmt.Errorf("%w: uid %d name %q role %q", ErrBadRequest, uid, name, role)
	}
	if err := b.Person(uid, name); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	next := slices.Clone(b.accs)
	i := slices.IndexFunc(next, func(a Account) bool { return a.UID == uid })
	if i < 0 {
		if !add {
			return fmt.Errorf("%w: uid %d has no role", ErrBadRequest, uid)
		}
		next = append(next, Account{UID: uid, Name: name})
		i = len(next) - 1
	}
	a := next[i]
	a.Roles = slices.Clone(a.Roles)
	has := slices.Contains(a.Roles, role)
	switch {
	case add && !has:
		a.Roles = append(a.Roles, role)
	case !add && has:
		a.Roles = slices.DeleteFunc(a.Roles, func(r string) bool { return r == role })
	}
	next[i] = a
	out, err := yaml.Marshal(roleFile{Version: 1, Accounts: next})
	if err != nil {
		return err
	}
	tmp := b.path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return fmt.Errorf("save role book: %w", err)
	}
	if err := os.Rename(tmp, b.path); err != nil {
		return fmt.Errorf("save role book: %w", err)
	}
	b.accs = next
	return nil
}

// AccountDB names the account of a uid, as the system's account database
// (/etc/passwd, NSS) knows it.
type AccountDB func(uid int) (string, error)

// SystemAccounts looks uids up with os/user.
func SystemAccounts(uid int) (string, error) {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		var unknown user.UnknownUserIdError
		if errors.As(err, &unknown) {
			return "", fmt.Errorf("%w: uid %d is no account on this system", ErrAccountMismatch, uid)
		}
		return "", fmt.Errorf("account database: %w", err)
	}
	return u.Username, nil
}

// checkAccount checks that the role book's account of uid is the system's:
// the uid exists and has the same name.
func checkAccount(db AccountDB, a Account) error {
	name, err := db(a.UID)
	if err != nil {
		return err
	}
	if name != a.Name {
		return fmt.Errorf("%w: uid %d is %q in the role book but %q in the system account database", ErrAccountMismatch, a.UID, a.Name, name)
	}
	return nil
}

// Mismatches lists the accounts the system account database does not know
// by the role book's name; they hold no role until root fixes either.
func (b *RoleBook) Mismatches(db AccountDB) []error {
	var errs []error
	for _, a := range b.Accounts() {
		if err := checkAccount(db, a); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
