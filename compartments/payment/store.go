package payment

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/e2sgate/e2sgate/internal/document/envelope"
	"github.com/e2sgate/e2sgate/internal/durable"
)

// store keeps payment's state at rest in sealed envelopes (internal/
// envelope): each value is one record sealed to the compartment's storage
// key; an index file per name (durable, written after the record) points to
// the current record, so a crash leaves either the old or the new value.
type store struct {
	env   *envelope.Store
	key   string
	index string
}

func openStore(dir string, keyBits int) (*store, error) {
	opts := []envelope.StoreOption{}
	if keyBits > 0 {
		kr, err := envelope.NewDirKeyRing(filepath.Join(dir, "keys"), keyBits)
		if err != nil {
			return nil, err
		}
		opts = append(opts, envelope.WithKeyRing(kr))
	}
	env, err := envelope.OpenStore(dir, opts...)
	if err != nil {
		return nil, err
	}
	s := &store{env: env, index: filepath.Join(dir, "index")}
	if err := os.MkdirAll(s.index, 0o700); err != nil {
		return nil, fmt.Errorf("payment store: %w", err)
	}
	keyFile := filepath.Join(dir, "storage-key")
	b, err := os.ReadFile(keyFile)
	switch {
	case err == nil:
		s.key = strings.TrimSpace(string(b))
	case errors.Is(err, fs.ErrNotExist):
		if s.key, err = env.NewKey(); err != nil {
			return nil, err
		}
		if err := durable.WriteFile(keyFile, []byte(s.key+"\n"), 0o600); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("payment store: %w", err)
	}
	return s, nil
}

func (s *store) ref(name string) string {
	h := sha256.Sum256([]byte(name))
	return filepath.Join(s.index, hex.EncodeToString(h[:16]))
}

// get loads name into v; found false if there is none.
func (s *store) get(name string, v any) (found bool, err error) {
	id, err := os.ReadFile(s.ref(name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	b, err := s.env.Get(strings.TrimSpace(string(id)))
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(b, v)
}

// put stores v as name's new value.
func (s *store) put(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	old, _ := os.ReadFile(s.ref(name))
	id, err := s.env.Put(s.key, b)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(s.ref(name), []byte(id), 0o600); err != nil {
		s.env.Delete(id)
		return err
	}
	if o := strings.TrimSpace(string(old)); o != "" && o != id {
		s.env.Delete(o)
	}
	return nil
}
