package supervisor

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	if got := clip("short", 10); got != "short" {
		t.Fatalf("clip short = %q", got)
	}
	long := strings.Repeat("é", 1000) // 2 bytes each
	got := clip(long, 101)
	if len(got) > 101+len("…") || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("clip long = %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}
