package label

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"unclassified", "unclassified", false},
		{"confidential:shop", "confidential:shop", false},
		{"secret:keys,shop,keys", "secret:keys,shop", false},
		{" restricted:web ", "restricted:web", false},
		{"topsecret", "", true},
		{"secret:", "secret", false},
		{"secret:a,,b", "", true},
		{"secret:a b", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			l, err := Parse(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrBadLabel) {
					t.Fatalf("Parse(%q) err = %v, want ErrBadLabel", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.String() != tt.want {
				t.Fatalf("Parse(%q) = %q, want %q", tt.in, l, tt.want)
			}
		})
	}
}

func TestDominance(t *testing.T) {
	tests := []struct {
		a, b             string
		dominates, equal bool
	}{
		{"secret:keys,shop", "confidential:shop", true, false},
		{"confidential:shop", "secret:keys,shop", false, false},
		{"confidential:shop", "confidential:shop", true, true},
		{"confidential:shop", "confidential:pay", false, false}, // incomparable sets
		{"secret:pay", "confidential:shop", false, false},       // higher class, disjoint set
		{"restricted:web", "unclassified", true, false},         // static content is readable by all
		{"unclassified", "restricted:web", false, false},
		{"confidential:pay,shop", "confidential:shop", true, false},
		{"unclassified", "unclassified", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.a+">="+tt.b, func(t *testing.T) {
			a, b := MustParse(tt.a), MustParse(tt.b)
			if got := a.Dominates(b); got != tt.dominates {
				t.Errorf("Dominates = %v, want %v", got, tt.dominates)
			}
			if got := a.CanRead(b); got != tt.dominates {
				t.Errorf("CanRead = %v, want %v", got, tt.dominates)
			}
			if got := a.CanWrite(b); got != tt.equal {
				t.Errorf("CanWrite = %v, want %v", got, tt.equal)
			}
		})
	}
}

// Static content carries the bare lowest label: every compartment can read
// it and none can write it.
func TestStaticContentReadOnlyForAll(t *testing.T) {
	static := MustParse("unclassified")
	for _, s := range []string{"restricted:web", "confidential:shop", "confidential:pay", "secret:keys", "confidential:internal"} {
		c := MustParse(s)
		if !c.CanRead(static) || c.CanWrite(static) {
			t.Errorf("%s: read=%v write=%v, want read only", s, c.CanRead(static), c.CanWrite(static))
		}
	}
}

// Dominance is a partial order: reflexive, antisymmetric, transitive.
func TestPartialOrder(t *testing.T) {
	all := []string{"unclassified", "restricted:web", "confidential:shop", "confidential:pay", "confidential:pay,shop", "secret:keys", "secret:keys,pay,shop"}
	for _, x := range all {
		a := MustParse(x)
		if !a.Dominates(a) {
			t.Errorf("%s does not dominate itself", a)
		}
		for _, y := range all {
			b := MustParse(y)
			if a.Dominates(b) && b.Dominates(a) && !a.Equal(b) {
				t.Errorf("antisymmetry broken: %s, %s", a, b)
			}
			for _, z := range all {
				c := MustParse(z)
				if a.Dominates(b) && b.Dominates(c) && !a.Dominates(c) {
					t.Errorf("transitivity broken: %s ≥ %s ≥ %s", a, b, c)
				}
			}
		}
	}
}
