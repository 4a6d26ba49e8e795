package envelope_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/internal/document/envelope"
)

// TestCryptoErasure seals records to two storage keys, deletes one key and
// checks that exactly the records sealed to it became unreadable, although
// their files are still on disk, while the others still open.
func TestCryptoErasure(t *testing.T) {
	dir := t.TempDir()
	ring, err := envelope.NewDirKeyRing(filepath.Join(dir, "keys"), 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := envelope.OpenStore(dir, envelope.WithKeyRing(ring))
	if err != nil {
		t.Fatal(err)
	}
	erased, err := s.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	kept, err := s.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		key, id string
		data    []byte
	}
	var recs []rec
	for i, key := range []string{erased, kept, erased, kept, erased} {
		data := bytes.Repeat([]byte{byte('a' + i)}, 100*(i+1))
		id, err := s.Put(key, data)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec{key, id, data})
	}
	for _, r := range recs {
		got, err := s.Get(r.id)
		if err != nil || !bytes.Equal(got, r.data) {
			t.Fatalf("before erasure: Get(%s) = %q, %v", r.id, got, err)
		}
	}

	if err := s.DeleteKey(erased); err != nil {
		t.Fatal(err)
	}

	for i, r := range recs {
		t.Run(filepath.Base(r.id), func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(dir, "records", r.id+".env")); err != nil {
				t.Fatalf("record file gone, erasure must come from the key alone: %v", err)
			}
			got, err := s.Get(r.id)
			if r.key == erased {
				if !errors.Is(err, envelope.ErrKeyErased) {
					t.Fatalf("record %d sealed to deleted key: Get = %q, %v; want ErrKeyErased", i, got, err)
				}
				return
			}
			if err != nil || !bytes.Equal(got, r.data) {
				t.Fatalf("record %d sealed to kept key: Get = %q, %v", i, got, err)
			}
		})
	}
	// Reopening the store over the same directory does not bring the key back.
	s2, err := envelope.OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Get(recs[0].id); !errors.Is(err, envelope.ErrKeyErased) {
		t.Fatalf("reopened store: err = %v, want ErrKeyErased", err)
	}
	// The key directory holds the kept key and nothing else.
	entries, err := os.ReadDir(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("key directory holds %d entries, want 1 (the kept key)", len(entries))
	}
	if _, err := ring.Decrypter(kept); err != nil {
		t.Fatalf("kept key: %v", err)
	}
	if _, err := ring.Decrypter(erased); !errors.Is(err, envelope.ErrNotFound) {
		t.Fatalf("deleted key: err = %v, want ErrNotFound", err)
	}
}

func TestStoreErrors(t *testing.T) {
	dir := t.TempDir()
	ring, err := envelope.NewDirKeyRing(filepath.Join(dir, "keys"), 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := envelope.OpenStore(dir, envelope.WithKeyRing(ring))
	if err != nil {
		t.Fatal(err)
	}
	key, err := s.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Put(key, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"get unknown record", func() error { _, err := s.Get("00000000-0000-4000-8000-000000000000"); return err }, envelope.ErrNotFound},
		{"get path traversal", func() error { _, err := s.Get("../records/" + id); return err }, envelope.ErrNotFound},
		{"put to unknown key", func() error { _, err := s.Put("SHA256:"+strings.Repeat("A", 43), []byte("x")); return err }, envelope.ErrNotFound},
		{"put to malformed key id", func() error { _, err := s.Put("../../etc/passwd", []byte("x")); return err }, envelope.ErrNotFound},
		{"delete unknown key", func() error { return s.DeleteKey("SHA256:" + strings.Repeat("A", 43)) }, envelope.ErrNotFound},
		{"delete key twice", func() error {
			k, err := s.NewKey()
			if err != nil {
				return err
			}
			if err := s.DeleteKey(k); err != nil {
				return err
			}
			return s.DeleteKey(k)
		}, envelope.ErrNotFound},
		{"delete record twice", func() error {
			if err := s.Delete(id); err != nil {
				return err
			}
			return s.Delete(id)
		}, envelope.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
