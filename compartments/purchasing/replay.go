package purchasing

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/e2sgate/e2sgate/internal/durable"
)

// replayGuard answers each signed request once. It remembers the key of
// every signed request it let through (a digest of the signer and the
// nonce: the signed content, never the signature bytes, so a second
// signature over the same request, or a re-encoding of the first, is the
// same key) until the request's time has left the window. Each key is
// appended to a file and synced before the request is answered, so a
// restart of purchasing forgets nothing; when max keys are live the guard
// refuses new requests rather than forget old ones.
type replayGuard struct {
	mu       sync.Mutex
	path     string
	f        *os.File
	seen     map[string]time.Time // key → when it may be forgotten
	max      int
	appended int // lines in the file
}

// openReplayGuard loads the live keys from path and rewrites it with
// only those.
func openReplayGuard(path string, max int, now time.Time) (*replayGuard, error) {
	g := &replayGuard{path: path, seen: map[string]time.Time{}, max: max}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("replay guard: %w", err)
	default:
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			exp, key, ok := strings.Cut(sc.Text(), " ")
			sec, err := strconv.ParseInt(exp, 10, 64)
			if !ok || err != nil || len(key) != 64 {
				continue // a torn last line
			}
			if t := time.Unix(sec, 0); t.After(now) {
				g.seen[key] = t
			}
		}
		err := sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("replay guard %s: %w", path, err)
		}
	}
	if err := g.compact(); err != nil {
		return nil, err
	}
	return g, nil
}

// compact rewrites the file with the live keys and reopens it to append.
func (g *replayGuard) compact() error {
	var b strings.Builder
	for k, t := range g.seen {
		fmt.Fprintf(&b, "%d %s\n", t.Unix(), k)
	}
	if g.f != nil {
		g.f.Close()
		g.f = nil
	}
	if err := durable.WriteFile(g.path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("replay guard: %w", err)
	}
	f, err := os.OpenFile(g.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("replay guard: %w", err)
	}
	g.f, g.appended = f, len(g.seen)
	return nil
}

// use records key until forget and reports ErrReplayed if it was used
// before, ErrReplayFull if max keys are live, or why it could not be
// recorded durably (then the request must be refused too).
func (g *replayGuard) use(key string, forget, now time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.seen[key]; ok && t.After(now) {
		return ErrReplayed
	}
	if len(g.seen) >= g.max {
		for k, t := range g.seen {
			if !t.After(now) {
				delete(g.seen, k)
			}
		}
		if len(g.seen) >= g.max {
			return ErrReplayFull
		}
	}
	// After a failed write the file may end in a torn line: rewrite it
	// whole before appending again.
	if g.f == nil || g.appended > 2*g.max {
		if err := g.compact(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(g.f, "%d %s\n", forget.Unix()+1, key)
	if err == nil {
		err = g.f.Sync()
	}
	if err != nil {
		g.f.Close()
		g.f = nil
		return fmt.Errorf("replay guard: %w", err)
	}
	g.appended++
	g.seen[key] = forget
	return nil
}
