package purchasing

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func key(c byte) string { return strings.Repeat(string(c), 64) }

// TestReplayGuard: a key is answered once until it may be forgotten,
// across reopening the file (a torn last line ignored); a full guard
// refuses a new key unless expired ones make room.
func TestReplayGuard(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	win := 10 * time.Minute
	type step struct {
		reopen bool   // open the file again first (a restart)
		key    string // "": none
		at     time.Duration
		want   error
	}
	for _, tt := range []struct {
		name  string
		max   int
		torn  string // appended to the file before the steps
		steps []step
	}{
		{"once", 10, "", []step{{key: key('a')}, {key: key('a'), at: time.Minute, want: ErrReplayed}, {key: key('b')}}},
		{"forgotten after the window", 10, "", []step{{key: key('a')}, {key: key('a'), at: win + 2*time.Second}}},
		{"after a restart", 10, "", []step{{key: key('a')}, {reopen: true, key: key('a'), at: time.Minute, want: ErrReplayed}}},
		{"expired keys not reloaded", 1, "", []step{{key: key('a')}, {reopen: true, key: key('b'), at: win + 2*time.Second}}},
		{"torn line ignored", 10, "12345 abc", []step{{key: key('a')}, {reopen: true, key: key('a'), want: ErrReplayed}, {key: key('b')}}},
		{"full refuses", 2, "", []step{{key: key('a')}, {key: key('b')}, {key: key('c'), want: ErrReplayFull}, {key: key('a'), want: ErrReplayed}}},
		{"full, expired make room", 2, "", []step{{key: key('a')}, {key: key('b')}, {key: key('c'), at: win + 2*time.Second}}},
		{"full after a restart", 2, "", []step{{key: key('a')}, {key: key('b')}, {reopen: true, key: key('c'), at: time.Minute, want: ErrReplayFull}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "nonces")
			g, err := openReplayGuard(path, tt.max, t0)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				if s.reopen {
					if tt.torn != "" {
						f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
						f.WriteString(tt.torn)
						f.Close()
					}
					g.f.Close()
					if g, err = openReplayGuard(path, tt.max, now); err != nil {
						t.Fatal(err)
					}
				}
				if err := g.use(s.key, now.Add(win), now); !errors.Is(err, s.want) {
					t.Fatalf("step %d: use(%s…) = %v, want %v", i, s.key[:4], err, s.want)
				}
			}
		})
	}
}
