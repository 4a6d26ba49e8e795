package admin

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"gopkg.in/yaml.v3"
)

// Roles known to the appliance (docs/OPERATIONS.md, roles).
var Roles = []string{"secadmin", "keyadmin", "auditor", "operator", "contentmgr"}

// Account is one operator.
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
	for i, a := range f.Accounts {
		if a.UID <= 0 {
			return nil, fmt.Errorf("%w: account %d: uid %d (root and negative uids hold no role)", ErrBadRoles, i, a.UID)
		}
		if seen[a.UID] {
			return nil, fmt.Errorf("%w: uid %d listed twice", ErrBadRoles, a.UID)
		}
		seen[a.UID] = true
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

// Change assigns (add) or revokes a role and saves the book.
func (b *RoleBook) Change(uid int, name, role string, add bool) error {
	if uid <= 0 || !slices.Contains(Roles, role) {
		return fmt.Errorf("%w: uid %d role %q", ErrBadRequest, uid, role)
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
	if name != "" {
		a.Name = name
	}
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
