package auditlog

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// follower runs Follow in the background and collects the scripts of the
// records it sees.
type follower struct {
	mu      sync.Mutex
	scripts []string
	done    chan error
}

func follow(t *testing.T, path string, offset int64) (*follower, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{done: make(chan error, 1)}
	go func() {
		f.done <- Follow(ctx, path, offset, func(r Record) {
			f.mu.Lock()
			f.scripts = append(f.scripts, r.Script)
			f.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-f.done; err != nil {
			t.Errorf("Follow: %v", err)
		}
	})
	return f, cancel
}

// waitFor polls until f has seen want (in order) or fails the test.
func (f *follower) waitFor(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		got := append([]string(nil), f.scripts...)
		f.mu.Unlock()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("followed %q, want %q", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func appendLine(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func recordLine(t *testing.T, script string) string {
	t.Helper()
	b, err := json.Marshal(Record{Script: script, Decision: "allow"})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func TestFollow(t *testing.T) {
	t.Run("from offset, whole lines only", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "audit.log")
		appendLine(t, p, recordLine(t, "old"))
		st, _ := os.Stat(p)
		f, _ := follow(t, p, st.Size())
		appendLine(t, p, recordLine(t, "a"))
		line := recordLine(t, "b")
		appendLine(t, p, line[:5]) // a record half written is not seen yet
		f.waitFor(t, "a")
		appendLine(t, p, line[5:]+"not json\n"+recordLine(t, "c"))
		f.waitFor(t, "a", "b", "c")
	})
	t.Run("log made later", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "audit.log")
		f, _ := follow(t, p, 0)
		time.Sleep(2 * followPoll)
		appendLine(t, p, recordLine(t, "first"))
		f.waitFor(t, "first")
	})
	t.Run("log shrank", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "audit.log")
		appendLine(t, p, recordLine(t, "a")+recordLine(t, "dropped"))
		f, _ := follow(t, p, 0)
		f.waitFor(t, "a", "dropped")
		if err := os.Truncate(p, int64(len(recordLine(t, "a")))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * followPoll)
		appendLine(t, p, recordLine(t, "b"))
		f.waitFor(t, "a", "dropped", "b")
	})
}
