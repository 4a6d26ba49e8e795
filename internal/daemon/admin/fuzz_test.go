package admin

import (
	"errors"
	"io/fs"
	"slices"
	"testing"

	"github.com/e2sgate/e2sgate/policies"
)

// FuzzParseRoles reads any role book: it is refused with ErrBadRoles or
// every account it yields has a uid above root, a name, known roles, and
// no uid or name twice.
func FuzzParseRoles(f *testing.F) {
	if b, err := fs.ReadFile(policies.Default, "roles.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("version: 1\naccounts:\n  - uid: 1000\n    name: ann\n    roles: [auditor]\n"))
	f.Add([]byte("version: 1\naccounts:\n  - uid: 0\n    name: root\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		accs, err := ParseRoles(data)
		if err != nil {
			if !errors.Is(err, ErrBadRoles) {
				t.Fatalf("refused without ErrBadRoles: %v", err)
			}
			return
		}
		uids, names := map[int]bool{}, map[string]bool{}
		for _, a := range accs {
			if a.UID <= 0 || a.Name == "" || uids[a.UID] || names[a.Name] {
				t.Fatalf("accepted account %+v", a)
			}
			uids[a.UID], names[a.Name] = true, true
			for _, r := range a.Roles {
				if !slices.Contains(Roles, r) {
					t.Fatalf("accepted role %q", r)
				}
			}
		}
	})
}
