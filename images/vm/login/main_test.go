package main

import (
	"slices"
	"testing"
)

func TestCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string // nil: refused
	}{
		{[]string{"-c", "e2sctl status"}, []string{e2sctl, "status"}},
		{[]string{"-c", "  e2sctl   audit verify "}, []string{e2sctl, "audit", "verify"}},
		{[]string{"-c", "/bin/sh"}, nil},
		{[]string{"-c", "e2sctlx status"}, nil},
		{[]string{"-c", ""}, nil},
		{[]string{}, nil},                    // interactive login
		{[]string{"-l"}, nil},                // login shell flag
		{[]string{"-c", "e2sctl", "x"}, nil}, // extra arguments
	} {
		got, err := command(tc.args)
		if tc.want == nil {
			if err == nil {
				t.Errorf("command(%q) = %q, want refused", tc.args, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("command(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}
