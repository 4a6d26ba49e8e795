package gateagent

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The policy lifecycle (DESIGN.md §3): a candidate set is checked —
// compiled in strict mode, its own tests run, its registry validated
// against the compartments that exist — and compared with the set in force
// before anyone may propose it; activation swaps the whole set at once
// (Agent.SetPolicy), so a call is decided wholly by the old or the new.

// LoadPolicySetFS loads and validates the registry and policy in fsys.
func LoadPolicySetFS(ctx context.Context, fsys fs.FS, compartments []string) (*PolicySet, error) {
	reg, err := LoadRegistry(fsys, "registry.yaml", compartments)
	if err != nil {
		return nil, err
	}
	if err := lintPolicy(fsys); err != nil {
		return nil, err
	}
	pol, err := LoadPolicy(ctx, fsys)
	if err != nil {
		return nil, err
	}
	return &PolicySet{Registry: reg, Policy: pol}, nil
}

// lintPolicy compiles the modules in OPA's strict mode (unused variables
// and imports, shadowed or deprecated built-ins are errors).
func lintPolicy(fsys fs.FS) error {
	names, err := fs.Glob(fsys, "*.rego")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadPolicy, err)
	}
	mods := map[string]*ast.Module{}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadPolicy, err)
		}
		m, err := ast.ParseModuleWithOpts(n, string(b), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadPolicy, err)
		}
		mods[n] = m
	}
	c := ast.NewCompiler().WithStrict(true).WithBuiltins(map[string]*ast.Builtin{
		dominatesDecl.Name: {Name: dominatesDecl.Name, Decl: dominatesDecl.Decl},
	})
	if c.Compile(mods); c.Failed() {
		return fmt.Errorf("%w: lint: %v", ErrBadPolicy, c.Errors)
	}
	return nil
}

// Verdict is how one caller's call of one script is decided.
type Verdict string

// Change is a call whose verdict differs between two policy sets.
type Change struct {
	Caller string  `json:"caller"`
	Script string  `json:"script"`
	Before Verdict `json:"before"`
	After  Verdict `json:"after"`
}

// PolicyTestResults runs the candidate's Rego tests and returns each result.
func PolicyTestResults(ctx context.Context, fsys fs.FS) ([]TestResult, error) {
	names, err := fs.Glob(fsys, "*.rego")
	if err != nil {
		return nil, err
	}
	mods := map[string]string{}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		mods[n] = string(b)
	}
	return policyTests(ctx, mods)
}

// DiffPolicySets decides every registered script for every compartment as
// caller (no user) under old and new, and returns where they differ.
func DiffPolicySets(ctx context.Context, old, new *PolicySet, labels map[string]string) ([]Change, error) {
	callers := make([]string, 0, len(labels))
	for c := range labels {
		callers = append(callers, c)
	}
	sort.Strings(callers)
	var scripts []string
	for s := range old.Registry.Scripts {
		scripts = append(scripts, s)
	}
	for s := range new.Registry.Scripts {
		if old.Registry.Lookup(s) == nil {
			scripts = append(scripts, s)
		}
	}
	sort.Strings(scripts)
	var out []Change
	for _, s := range scripts {
		for _, c := range callers {
			b, err := verdict(ctx, old, labels, c, s)
			if err != nil {
				return nil, err
			}
			a, err := verdict(ctx, new, labels, c, s)
			if err != nil {
				return nil, err
			}
			if a != b {
				out = append(out, Change{Caller: c, Script: s, Before: b, After: a})
			}
		}
	}
	return out, nil
}

func verdict(ctx context.Context, set *PolicySet, labels map[string]string, caller, script string) (Verdict, error) {
	reg := set.Registry.Lookup(script)
	if reg == nil {
		return "unregistered", nil
	}
	d, err := set.Policy.Decide(ctx, PolicyInput{
		Caller: caller, CallerLabel: labels[caller], Target: reg.Target, TargetLabel: labels[reg.Target],
		Script: script, Method: reg.Methods[0],
		Registration: policyReg{Callers: reg.Callers, Clearance: reg.Clearance, Roles: reg.Roles},
	})
	if err != nil {
		return "", fmt.Errorf("decide %s for %s: %w", script, caller, err)
	}
	v := "deny"
	if d.Allow {
		v = "allow"
	}
	extra := ""
	if len(reg.Roles) > 0 {
		extra = " roles " + strings.Join(slices.Sorted(slices.Values(reg.Roles)), ",")
	}
	return Verdict(fmt.Sprintf("%s (%s)%s", v, d.Reason, extra)), nil
}
