package gateagent

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/e2sgate/e2sgate/policies"
)

var lifecycleNames = []string{"outside", "purchasing", "payment", "keyhandler", "inside"}

var lifecycleLabels = map[string]string{
	"outside": "restricted:web", "purchasing": "confidential:shop", "payment": "confidential:pay",
	"keyhandler": "secret:keys,shop", "inside": "confidential:backoffice,pay,shop",
}

// embeddedCopy returns the embedded policy set as a map FS to edit.
func embeddedCopy(t *testing.T) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(policies.Default, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.Default, p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func edit(m fstest.MapFS, name, old, new string) {
	m[name] = &fstest.MapFile{Data: []byte(strings.Replace(string(m[name].Data), old, new, 1))}
}

func TestLoadPolicySetFSRefusesBadSets(t *testing.T) {
	tests := []struct {
		name   string
		change func(m fstest.MapFS)
		want   error
		says   string
	}{
		{"embedded set", func(fstest.MapFS) {}, nil, ""},
		{"syntax error", func(m fstest.MapFS) { edit(m, "gate.rego", "default decision :=", "default decision =:") }, ErrBadPolicy, "gate.rego"},
		{"failing test", func(m fstest.MapFS) { edit(m, "gate.rego", `"pol.allowed"`, `"pol.allowd"`) }, ErrBadPolicy, "policy tests fail"},
		{"unknown compartment", func(m fstest.MapFS) { edit(m, "registry.yaml", "callers: [outside]", "callers: [billing]") }, ErrBadRegistry, `"billing" is not a compartment`},
		{"lint: unused variable", func(m fstest.MapFS) {
			edit(m, "gate.rego", "first_denial := sort(denials)[0]", "first_denial := sort(denials)[0]\n\nunused if {\n\tx := 1\n\tinput.caller\n}")
		}, ErrBadPolicy, "lint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := embeddedCopy(t)
			tc.change(m)
			_, err := LoadPolicySetFS(context.Background(), m, lifecycleNames)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
}

func TestDiffPolicySets(t *testing.T) {
	ctx := context.Background()
	old, err := LoadPolicySetFS(ctx, embeddedCopy(t), lifecycleNames)
	if err != nil {
		t.Fatal(err)
	}
	same, err := DiffPolicySets(ctx, old, old, lifecycleLabels)
	if err != nil || len(same) != 0 {
		t.Fatalf("diff with itself: %v %v", same, err)
	}
	m := embeddedCopy(t)
	// The catalogue may also be called by inside; the certificate is gone.
	edit(m, "registry.yaml", "    handler: catalogue\n    methods: [GET]\n    callers: [outside]", "    handler: catalogue\n    methods: [GET]\n    callers: [outside, inside]")
	var kept []string
	drop := false
	for _, l := range strings.Split(string(m["registry.yaml"].Data), "\n") {
		if strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "   ") {
			drop = l == "  keyhandler/certificate:"
		}
		if !drop {
			kept = append(kept, l)
		}
	}
	m["registry.yaml"] = &fstest.MapFile{Data: []byte(strings.Join(kept, "\n"))}
	cand, err := LoadPolicySetFS(ctx, m, lifecycleNames)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := DiffPolicySets(ctx, old, cand, lifecycleLabels)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Change{}
	for _, c := range changes {
		got[c.Caller+" "+c.Script] = c
	}
	if c := got["inside purchasing/catalogue"]; !strings.HasPrefix(string(c.After), "allow") || !strings.HasPrefix(string(c.Before), "deny (pol.caller_not_permitted)") {
		t.Fatalf("inside → catalogue change: %+v (all %+v)", c, changes)
	}
	if c := got["outside keyhandler/certificate"]; c.After != "unregistered" || !strings.HasPrefix(string(c.Before), "allow") {
		t.Fatalf("certificate removal: %+v (all %+v)", c, changes)
	}
}
