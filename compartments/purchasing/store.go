package purchasing

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/e2sgate/e2sgate/internal/document/envelope"
	"github.com/e2sgate/e2sgate/internal/durable"
)

// store keeps named records (orders, issued offers, registered members)
// sealed at rest: each version is a sealed envelope (per-record AES-256-GCM
// key and HMAC secret, sealed to the compartment's storage key, whose
// private half stays in the data dir); an index file per name, written
// durably, says which envelope is current. A record is on disk (fsync'd)
// when put returns; a crash between the envelope and the index leaves the
// old version current and an orphan envelope, never a lost or half record.
type store struct {
	mu  sync.Mutex
	env *envelope.Store
	key string
	idx string
}

var nameRE = regexp.MustCompile(`^[a-z]+(-[0-9a-f]{32})?$`)

func openStore(dir string) (*store, error) {
	env, err := envelope.OpenStore(dir)
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(dir, "storage-key")
	b, err := os.ReadFile(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		id, kerr := env.NewKey()
		if kerr != nil {
			return nil, kerr
		}
		if err := durable.WriteFile(keyFile, []byte(id), 0o600); err != nil {
			return nil, err
		}
		b, err = []byte(id), nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage key id: %w", err)
	}
	idx := filepath.Join(dir, "index")
	if err := os.MkdirAll(idx, 0o700); err != nil {
		return nil, err
	}
	return &store{env: env, key: strings.TrimSpace(string(b)), idx: idx}, nil
}

// put seals v (as JSON) and makes it the current version of name.
func (s *store) put(name string, v any) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("record name %q: %w", name, ErrBadName)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rid, err := s.env.Put(s.key, b)
	if err != nil {
		return fmt.Errorf("seal %s: %w", name, err)
	}
	p := filepath.Join(s.idx, name)
	old, _ := os.ReadFile(p)
	if err := durable.WriteFile(p, []byte(rid), 0o600); err != nil {
		s.env.Delete(rid)
		return fmt.Errorf("index %s: %w", name, err)
	}
	if len(old) > 0 && string(old) != rid {
		s.env.Delete(string(old)) // the old version; an orphan if this fails
	}
	return nil
}

// get opens the current version of name into v; false if there is none.
func (s *store) get(name string, v any) (bool, error) {
	if !nameRE.MatchString(name) {
		return false, nil
	}
	s.mu.Lock()
	rid, err := os.ReadFile(filepath.Join(s.idx, name))
	if errors.Is(err, fs.ErrNotExist) {
		s.mu.Unlock()
		return false, nil
	}
	if err != nil {
		s.mu.Unlock()
		return false, fmt.Errorf("index %s: %w", name, err)
	}
	b, err := s.env.Get(string(rid))
	s.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("open %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", name, err)
	}
	return true, nil
}

// names lists the records whose name starts with prefix, sorted.
func (s *store) names(prefix string) ([]string, error) {
	ents, err := os.ReadDir(s.idx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, prefix) && nameRE.MatchString(n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}
