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

// The policy lifecycle (docs/OPERATIONS.md): a candidate set is checked —
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
	c := ast.NewCompiler().WithStrict(true).WithCapabilities(policyCapabilities())
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

// ShadowVerdict is how a candidate set decides a call that the set in
// force already decided (as its audit record says), by the same stages:
// registry, then policy. Filters are the registration's and do not depend
// on the policy, so they are not re-run.
func ShadowVerdict(ctx context.Context, cand *PolicySet, labels map[string]string, caller, script, user string) (Verdict, error) {
	reg := cand.Registry.Lookup(script)
	if reg == nil {
		return "unregistered", nil
	}
	d, err := cand.Policy.Decide(ctx, PolicyInput{
		Caller: caller, CallerLabel: labels[caller], Target: reg.Target, TargetLabel: labels[reg.Target],
		Script: script, Method: reg.Methods[0],
		Registration: policyReg{Callers: reg.Callers, Clearance: reg.Clearance, Roles: reg.Roles},
		User:         policyUser{Name: user},
	})
	if err != nil {
		return "", fmt.Errorf("shadow %s for %s: %w", script, caller, err)
	}
	if !d.Allow {
		return Verdict("deny (" + d.Reason + ")"), nil
	}
	return "allow", nil
}

// RecordedVerdict is the verdict of the set in force from an audit
// record's reason, by the same stages as ShadowVerdict; ok is false for
// records that are no gate decision (kernel events, supervisor notes).
func RecordedVerdict(reason, target string) (Verdict, bool) {
	switch {
	case reason == "reg.unknown_script":
		return "unregistered", true
	case strings.HasPrefix(reason, "pol.") && reason != "pol.allowed":
		return Verdict("deny (" + reason + ")"), true
	case target != "" && (reason == "pol.allowed" || strings.HasPrefix(reason, "flt.") || strings.HasPrefix(reason, "gate.")):
		return "allow", true
	}
	return "", false
}
