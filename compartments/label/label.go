// Package label is the sensitivity-label lattice (docs/ARCHITECTURE.md, labels): a label is
// a classification plus a set of compartments; A dominates B iff A's
// classification is at least B's and A's set contains B's. Read needs the
// subject to dominate the object; write needs equality.
//
// A label's text form is "classification" or "classification:comp,comp",
// e.g. "confidential:shop" or "unclassified".
package label

import (
	"fmt"
	"slices"
	"strings"
)

// Classification is an ordered sensitivity level.
type Classification int

const (
	Unclassified Classification = iota
	Restricted
	Confidential
	Secret
)

var classNames = []string{"unclassified", "restricted", "confidential", "secret"}

func (c Classification) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return fmt.Sprintf("classification(%d)", int(c))
	}
	return classNames[c]
}

// Label is a classification and a sorted, duplicate-free compartment set.
type Label struct {
	Class Classification
	Set   []string
}

// Parse reads a label's text form.
func Parse(s string) (Label, error) {
	class, set, _ := strings.Cut(strings.TrimSpace(s), ":")
	i := slices.Index(classNames, class)
	if i < 0 {
		return Label{}, fmt.Errorf("%w: %q: classification must be one of %s", ErrBadLabel, s, strings.Join(classNames, ", "))
	}
	l := Label{Class: Classification(i)}
	if set != "" {
		for _, c := range strings.Split(set, ",") {
			c = strings.TrimSpace(c)
			if c == "" || strings.ContainsAny(c, ": ") {
				return Label{}, fmt.Errorf("%w: %q: empty or malformed compartment name", ErrBadLabel, s)
			}
			l.Set = append(l.Set, c)
		}
	}
	slices.Sort(l.Set)
	l.Set = slices.Compact(l.Set)
	return l, nil
}

// MustParse is Parse for labels written in code.
func MustParse(s string) Label {
	l, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return l
}

func (l Label) String() string {
	if len(l.Set) == 0 {
		return l.Class.String()
	}
	return l.Class.String() + ":" + strings.Join(l.Set, ",")
}

// Dominates reports whether l ≥ o in the lattice.
func (l Label) Dominates(o Label) bool {
	if l.Class < o.Class {
		return false
	}
	for _, c := range o.Set {
		if _, found := slices.BinarySearch(l.Set, c); !found {
			return false
		}
	}
	return true
}

// Equal reports whether l and o are the same label.
func (l Label) Equal(o Label) bool { return l.Class == o.Class && slices.Equal(l.Set, o.Set) }

// CanRead reports whether a subject labelled l may read an object labelled o.
func (l Label) CanRead(o Label) bool { return l.Dominates(o) }

// CanWrite reports whether a subject labelled l may write an object labelled o.
func (l Label) CanWrite(o Label) bool { return l.Equal(o) }
