package gateagent

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// The decision table: most calls are decided by what is fixed for a
// policy activation — the caller, the script, the method, the labels and
// the registration. For each such key the policy is partially evaluated
// with every other input field unknown (OPA partial evaluation); where the
// residual policy refers to none of them, and calls no non-deterministic
// builtin, the decision cannot depend on anything else and is evaluated
// once, at activation, by the full query. A call is then decided by a map
// lookup. Keys whose decision does depend on the rest of the input (a
// registration that requires roles, a policy that reads the user) and keys
// not in the table (a method the registration does not list, a caller
// without a label) go to the full prepared query, as before. The Rego
// policy stays the only source of a decision; the table is a cache of it
// that lives exactly as long as the activation it was built for.

// tableKey is what a table decision may depend on besides the activation.
type tableKey struct{ caller, script, method string }

// decisionTable is the decisions compiled for one (policy, registry,
// labels). Read-only once built.
type decisionTable struct {
	entries map[tableKey]Decision
	dynamic int // keys left to the full query
}

// lookup returns the compiled decision for the key, if it has one.
func (t *decisionTable) lookup(caller, script, method string) (Decision, bool) {
	if t == nil {
		return Decision{}, false
	}
	d, ok := t.entries[tableKey{caller, script, method}]
	return d, ok
}

// staticFields are the policy input's fields fixed by a tableKey; every
// other top-level field of PolicyInput is unknown when compiling the table,
// so a field added to the input later is treated as per call unless it is
// listed here.
var staticFields = map[string]bool{
	"caller": true, "caller_label": true, "target": true, "target_label": true,
	"script": true, "method": true, "registration": true,
}

// tableUnknowns are the input refs partial evaluation treats as unknown:
// every PolicyInput field not in staticFields.
var tableUnknowns = func() []string {
	var u []string
	t := reflect.TypeFor[PolicyInput]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" && !staticFields[name] {
			u = append(u, "input."+name)
		}
	}
	return u
}()

// compileTable builds the decision table of reg under p for the callers
// in labels. It fails only when ctx ends.
func (p *Policy) compileTable(ctx context.Context, reg *Registry, labels map[string]string) (*decisionTable, error) {
	t := &decisionTable{entries: map[tableKey]Decision{}}
	if len(p.nondeterministic) > 0 {
		// Partial evaluation evaluates such a call inside a rule it can
		// settle, so the residual would not show it: no table at all.
		for _, r := range reg.Scripts {
			t.dynamic += len(r.Methods) * len(labels)
		}
		return t, nil
	}
	for script, r := range reg.Scripts {
		for caller, callerLabel := range labels {
			for _, method := range r.Methods {
				in := PolicyInput{
					Caller: caller, CallerLabel: callerLabel,
					Target: r.Target, TargetLabel: labels[r.Target],
					Script: script, Method: method,
					Registration: policyReg{Callers: r.Callers, Clearance: r.Clearance, Roles: r.Roles},
				}
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("compile decision table: %w", err)
				}
				// Anything partial evaluation or the query cannot settle
				// here is left to the full query, which meets it per call.
				if static, err := p.static(ctx, in); err != nil || !static {
					t.dynamic++
					continue
				}
				d, err := p.Decide(ctx, in)
				if err != nil {
					t.dynamic++
					continue
				}
				t.entries[tableKey{caller, script, method}] = d
			}
		}
	}
	return t, nil
}

// static reports whether the decision for in's static fields is the same
// whatever the unknown fields hold.
func (p *Policy) static(ctx context.Context, in PolicyInput) (bool, error) {
	full, ok := in.ast().(ast.Object)
	if !ok {
		return false, fmt.Errorf("policy input is %T, want an object", in.ast())
	}
	known := ast.NewObject()
	full.Foreach(func(k, v *ast.Term) {
		if s, ok := k.Value.(ast.String); ok && staticFields[string(s)] {
			known.Insert(k, v)
		}
	})
	pqs, err := p.partial.Partial(ctx, rego.EvalParsedInput(known))
	if err != nil {
		return false, fmt.Errorf("partial evaluation: %w", err)
	}
	for _, q := range pqs.Queries {
		if !residualStatic(q) {
			return false, nil
		}
	}
	for _, m := range pqs.Support {
		if !residualStatic(m) {
			return false, nil
		}
	}
	return true, nil
}

// residualStatic reports whether a residual query or module reads no input
// and calls no non-deterministic builtin (time, randomness) that partial
// evaluation left for later.
func residualStatic(x any) bool {
	static := true
	ast.WalkRefs(x, func(r ast.Ref) bool {
		if r.HasPrefix(ast.InputRootRef) {
			static = false
		}
		return !static
	})
	if !static {
		return false
	}
	ast.WalkExprs(x, func(e *ast.Expr) bool {
		if op := e.OperatorTerm(); op != nil {
			if b, ok := ast.BuiltinMap[e.Operator().String()]; ok && b.Nondeterministic {
				static = false
			}
		}
		return !static
	})
	return static
}

// nondeterministicCalls lists the non-deterministic builtins (time,
// randomness, ...) the modules call; a policy that calls one has no
// decision table.
func nondeterministicCalls(modules map[string]*ast.Module) []string {
	var found []string
	note := func(op *ast.Term) {
		if op == nil {
			return
		}
		name := op.String()
		if b, ok := ast.BuiltinMap[name]; ok && b.Nondeterministic && !slices.Contains(found, name) {
			found = append(found, name)
		}
	}
	for _, m := range modules {
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if e.IsCall() {
				note(e.OperatorTerm())
			}
			return false
		})
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if c, ok := t.Value.(ast.Call); ok && len(c) > 0 {
				note(c[0])
			}
			return false
		})
	}
	slices.Sort(found)
	return found
}
