package admin

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

const adminQuery = "data.e2sgate.admin.decision"

// Decision is admin.rego's answer for one command.
type Decision struct {
	Allow         bool     `json:"allow"`
	Reason        string   `json:"reason"`
	Authorization string   `json:"authorization"`
	TwoPerson     bool     `json:"two_person"`
	Roles         []string `json:"roles"`
}

// Authorizer evaluates the command authorizations of admin.rego against
// the role book. The prepared query is rebuilt when the roles change.
type Authorizer struct {
	modules map[string]string
	mu      sync.RWMutex
	query   rego.PreparedEvalQuery
}

// NewAuthorizer compiles admin*.rego from fsys with the role book's data.
func NewAuthorizer(ctx context.Context, fsys fs.FS, book *RoleBook) (*Authorizer, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("admin policy: %w", err)
	}
	a := &Authorizer{modules: map[string]string{}}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "admin") && path.Ext(n) == ".rego" && !strings.HasSuffix(n, "_test.rego") {
			b, err := fs.ReadFile(fsys, n)
			if err != nil {
				return nil, fmt.Errorf("admin policy: %w", err)
			}
			a.modules[n] = string(b)
		}
	}
	if len(a.modules) == 0 {
		return nil, fmt.Errorf("admin policy: no admin.rego")
	}
	return a, a.Reload(ctx, book)
}

// Reload prepares the query again with the current roles.
func (a *Authorizer) Reload(ctx context.Context, book *RoleBook) error {
	store := inmem.NewFromObject(map[string]any{"e2sgate": map[string]any{"accounts": book.Data()}})
	opts := []func(*rego.Rego){rego.Query(adminQuery), rego.Store(store)}
	for n, src := range a.modules {
		opts = append(opts, rego.Module(n, src))
	}
	q, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return fmt.Errorf("admin policy: %w", err)
	}
	a.mu.Lock()
	a.query = q
	a.mu.Unlock()
	return nil
}

// Decide asks the policy whether uid may run command.
func (a *Authorizer) Decide(ctx context.Context, uid int, command string) (Decision, error) {
	a.mu.RLock()
	q := a.query
	a.mu.RUnlock()
	rs, err := q.Eval(ctx, rego.EvalInput(map[string]any{"uid": uid, "command": command}))
	if err != nil {
		return Decision{}, fmt.Errorf("evaluate admin policy: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fmt.Errorf("evaluate admin policy: %d results", len(rs))
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("evaluate admin policy: decision is %T", rs[0].Expressions[0].Value)
	}
	var d Decision
	d.Allow, _ = m["allow"].(bool)
	d.Reason, _ = m["reason"].(string)
	d.Authorization, _ = m["authorization"].(string)
	d.TwoPerson, _ = m["two_person"].(bool)
	if rs, ok := m["roles"].([]any); ok {
		for _, r := range rs {
			if s, ok := r.(string); ok {
				d.Roles = append(d.Roles, s)
			}
		}
	}
	return d, nil
}
