package gateagent

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/e2sgate/e2sgate/compartments/label"
)

// decisionQuery is the one query the gate agent evaluates per call.
const decisionQuery = "data.e2sgate.gate.decision"

// Decision is the policy's answer for one call.
type Decision struct {
	Allow           bool
	Reason          string
	ResponseFilters []string
}

// Policy is a compiled policy set with its decision query prepared once.
type Policy struct {
	query   rego.PreparedEvalQuery
	partial rego.PreparedPartialQuery // the same query, for the decision table (table.go)
	// nondeterministic lists the non-deterministic builtins the policy
	// calls; with any, there is no decision table.
	nondeterministic []string
	modules          map[string]string
}

// dominates is the Rego builtin e2s.dominates(a, b): the label lattice of
// compartments/label, implemented once in Go.
var dominatesDecl = &rego.Function{
	Name:        "e2s.dominates",
	Description: "label a dominates label b (classification >= and compartment superset)",
	Decl:        types.NewFunction(types.Args(types.S, types.S), types.B),
	Memoize:     true,
}

func dominates(_ rego.BuiltinContext, a, b *ast.Term) (*ast.Term, error) {
	as, ok1 := a.Value.(ast.String)
	bs, ok2 := b.Value.(ast.String)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("e2s.dominates: want two label strings")
	}
	la, err := label.Parse(string(as))
	if err != nil {
		return nil, err
	}
	lb, err := label.Parse(string(bs))
	if err != nil {
		return nil, err
	}
	return ast.BooleanTerm(la.Dominates(lb)), nil
}

var dominatesBuiltin = rego.Function2(dominatesDecl, dominates)

// deniedBuiltins are OPA builtins a gate policy may not use: they reach the
// network or the host, and policies are compiled and tested by the root
// supervisor on a single secadmin's say (policy check, shadow).
var deniedBuiltins = []string{"http.send", "net.lookup_ip_addr", "opa.runtime", "providers.aws.sign_req"}

// policyCapabilities is OPA's builtin set for this version without the
// denied builtins, plus e2s.dominates.
func policyCapabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	kept := make([]*ast.Builtin, 0, len(c.Builtins)+1)
	for _, b := range c.Builtins {
		if !slices.Contains(deniedBuiltins, b.Name) {
			kept = append(kept, b)
		}
	}
	c.Builtins = append(kept, &ast.Builtin{Name: dominatesDecl.Name, Decl: dominatesDecl.Decl})
	return c
}

// LoadPolicy compiles every .rego file at the top of fsys, runs the
// policy's own tests (*_test.rego) and prepares the decision query. A
// policy that does not compile or whose tests fail is refused.
func LoadPolicy(ctx context.Context, fsys fs.FS) (*Policy, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
	}
	modules := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".rego" {
			continue
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
		}
		modules[e.Name()] = string(b)
	}
	if len(modules) == 0 {
		return nil, fmt.Errorf("%w: no .rego files", ErrBadPolicy)
	}
	if err := RunPolicyTests(ctx, modules); err != nil {
		return nil, err
	}
	opts := []func(*rego.Rego){rego.Query(decisionQuery), dominatesBuiltin, rego.Capabilities(policyCapabilities())}
	parsed := map[string]*ast.Module{}
	for name, src := range modules {
		if !strings.HasSuffix(name, "_test.rego") {
			opts = append(opts, rego.Module(name, src))
			m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
			}
			parsed[name] = m
		}
	}
	q, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
	}
	pq, err := rego.New(append(opts, rego.Unknowns(tableUnknowns))...).PrepareForPartial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: prepare partial evaluation: %v", ErrBadPolicy, err)
	}
	return &Policy{query: q, partial: pq, modules: modules, nondeterministic: nondeterministicCalls(parsed)}, nil
}

// TestResult is one policy test's outcome.
type TestResult struct {
	Name string
	Pass bool
	Err  string
}

// RunPolicyTests runs every test_ rule in modules (with e2s.dominates
// available) and fails if any fails or none exists.
func RunPolicyTests(ctx context.Context, modules map[string]string) error {
	results, err := policyTests(ctx, modules)
	if err != nil {
		return err
	}
	var failed []string
	for _, r := range results {
		if !r.Pass {
			failed = append(failed, r.Name+r.Err)
		}
	}
	if len(results) == 0 {
		return fmt.Errorf("%w: the policy has no tests (test_* rules in *_test.rego)", ErrBadPolicy)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: %d of %d policy tests fail: %s", ErrBadPolicy, len(failed), len(results), strings.Join(failed, "; "))
	}
	return nil
}

func policyTests(ctx context.Context, modules map[string]string) ([]TestResult, error) {
	parsed := map[string]*ast.Module{}
	for name, src := range modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
		}
		parsed[name] = m
	}
	store := inmem.New()
	ch, err := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithCapabilities(policyCapabilities())).
		SetStore(store).
		AddCustomBuiltins([]*tester.Builtin{{Decl: &ast.Builtin{Name: dominatesDecl.Name, Decl: dominatesDecl.Decl}, Func: dominatesBuiltin}}).
		Run(ctx, parsed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
	}
	var out []TestResult
	for r := range ch {
		tr := TestResult{Name: r.Package + "." + r.Name, Pass: r.Pass()}
		if r.Error != nil {
			tr.Err = ": " + r.Error.Error()
		} else if r.Fail {
			tr.Err = ": failed"
		}
		out = append(out, tr)
	}
	return out, nil
}

// PolicyInput is what the policy sees of a call.
type PolicyInput struct {
	Caller       string     `json:"caller"`
	CallerLabel  string     `json:"caller_label"`
	Target       string     `json:"target"`
	TargetLabel  string     `json:"target_label"`
	Script       string     `json:"script"`
	Method       string     `json:"method"`
	Registration policyReg  `json:"registration"`
	User         policyUser `json:"user"`
}

type policyReg struct {
	Callers   []string `json:"callers"`
	Clearance string   `json:"clearance"`
	Roles     []string `json:"roles"`
}

type policyUser struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

// Decide evaluates the decision query for in.
func (p *Policy) Decide(ctx context.Context, in PolicyInput) (Decision, error) {
	if in.Registration.Roles == nil {
		in.Registration.Roles = []string{}
	}
	if in.User.Roles == nil {
		in.User.Roles = []string{}
	}
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(in.ast()))
	if err != nil {
		return Decision{}, fmt.Errorf("evaluate policy: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, fmt.Errorf("evaluate policy: %d results, want 1", len(rs))
	}
	m, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("evaluate policy: decision is %T, want an object", rs[0].Expressions[0].Value)
	}
	d := Decision{}
	d.Allow, _ = m["allow"].(bool)
	d.Reason, _ = m["reason"].(string)
	if ob, ok := m["obligations"].(map[string]any); ok {
		if rf, ok := ob["response_filters"].([]any); ok {
			for _, f := range rf {
				if s, ok := f.(string); ok {
					d.ResponseFilters = append(d.ResponseFilters, s)
				}
			}
		}
	}
	if d.Reason == "" {
		d.Reason = "pol.default_deny"
		d.Allow = false
	}
	return d, nil
}

// ast builds the input value directly, sparing a JSON round trip per call.
func (in PolicyInput) ast() ast.Value {
	strs := func(ss []string) *ast.Term {
		ts := make([]*ast.Term, len(ss))
		for i, s := range ss {
			ts[i] = ast.StringTerm(s)
		}
		return ast.ArrayTerm(ts...)
	}
	return ast.NewObject(
		ast.Item(ast.StringTerm("caller"), ast.StringTerm(in.Caller)),
		ast.Item(ast.StringTerm("caller_label"), ast.StringTerm(in.CallerLabel)),
		ast.Item(ast.StringTerm("target"), ast.StringTerm(in.Target)),
		ast.Item(ast.StringTerm("target_label"), ast.StringTerm(in.TargetLabel)),
		ast.Item(ast.StringTerm("script"), ast.StringTerm(in.Script)),
		ast.Item(ast.StringTerm("method"), ast.StringTerm(in.Method)),
		ast.Item(ast.StringTerm("registration"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("callers"), strs(in.Registration.Callers)),
			ast.Item(ast.StringTerm("clearance"), ast.StringTerm(in.Registration.Clearance)),
			ast.Item(ast.StringTerm("roles"), strs(in.Registration.Roles)),
		)),
		ast.Item(ast.StringTerm("user"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("name"), ast.StringTerm(in.User.Name)),
			ast.Item(ast.StringTerm("roles"), strs(in.User.Roles)),
		)),
	)
}
