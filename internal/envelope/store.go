package envelope

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultStorageKeyBits is the RSA modulus size of new storage keys.
const DefaultStorageKeyBits = 3072

// Store keeps records at rest as sealed envelopes under dir/records, each
// sealed to one storage key under dir/keys. Deleting a storage key erases
// every record sealed to it: the per-record AES key and HMAC secret can no
// longer be unsealed, so the record is unreadable for good (crypto-erasure).
//
// A storage key is named by its id: the hex SHA-256 of its DER
// SubjectPublicKeyInfo, i.e. the same digest as the envelopes'
// public_key_signature.
type Store struct {
	dir     string
	keyBits int
}

// StoreOption configures a Store.
type StoreOption func(*Store)

// WithKeyBits sets the RSA modulus size of storage keys made by NewKey.
func WithKeyBits(bits int) StoreOption { return func(s *Store) { s.keyBits = bits } }

// OpenStore opens (creating if needed) a record store in dir.
func OpenStore(dir string, opts ...StoreOption) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "keys"), filepath.Join(dir, "records")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
	}
	s := &Store{dir: dir, keyBits: DefaultStorageKeyBits}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// NewKey generates a storage key and returns its id.
func (s *Store) NewKey() (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, s.keyBits)
	if err != nil {
		return "", fmt.Errorf("new storage key: %w", err)
	}
	id, err := keyID(&key.PublicKey)
	if err != nil {
		return "", fmt.Errorf("new storage key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("new storage key: %w", err)
	}
	if err := writeFileAtomic(s.keyPath(id), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return "", fmt.Errorf("new storage key: %w", err)
	}
	return id, nil
}

// DeleteKey removes a storage key. Every record sealed to it becomes
// unreadable; Get reports ErrKeyErased for them.
func (s *Store) DeleteKey(id string) error {
	if !validID(id) {
		return fmt.Errorf("delete storage key %q: %w", id, ErrNotFound)
	}
	if err := os.Remove(s.keyPath(id)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete storage key %s: %w", id, ErrNotFound)
		}
		return fmt.Errorf("delete storage key %s: %w", id, err)
	}
	if err := syncDir(filepath.Join(s.dir, "keys")); err != nil {
		return fmt.Errorf("delete storage key %s: %w", id, err)
	}
	return nil
}

// Put seals plaintext to the storage key keyID and stores it; it returns
// the record id (the envelope id).
func (s *Store) Put(keyID string, plaintext []byte) (string, error) {
	key, err := s.loadKey(keyID)
	if err != nil {
		return "", fmt.Errorf("put record: %w", err)
	}
	env, err := SealPayload(plaintext, &key.PublicKey)
	if err != nil {
		return "", fmt.Errorf("put record: %w", err)
	}
	b, err := Marshal(env)
	if err != nil {
		return "", fmt.Errorf("put record: %w", err)
	}
	if err := writeFileAtomic(s.recordPath(env.GetId()), b); err != nil {
		return "", fmt.Errorf("put record %s: %w", env.GetId(), err)
	}
	return env.GetId(), nil
}

// Get reads and opens a record. It fails with ErrKeyErased when the storage
// key the record was sealed to has been deleted.
func (s *Store) Get(recordID string) ([]byte, error) {
	if !validID(recordID) {
		return nil, fmt.Errorf("get record %q: %w", recordID, ErrNotFound)
	}
	b, err := os.ReadFile(s.recordPath(recordID))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("get record %s: %w", recordID, ErrNotFound)
		}
		return nil, fmt.Errorf("get record %s: %w", recordID, err)
	}
	env, err := Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("get record %s: %w", recordID, err)
	}
	kid, err := keyIDFromSignature(env.GetPublicKeySignature())
	if err != nil {
		return nil, fmt.Errorf("get record %s: %w", recordID, err)
	}
	key, err := s.loadKey(kid)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("get record %s: key %s: %w", recordID, kid, ErrKeyErased)
	}
	if err != nil {
		return nil, fmt.Errorf("get record %s: %w", recordID, err)
	}
	c, err := Open(env, key)
	if err != nil {
		return nil, fmt.Errorf("get record %s: %w", recordID, err)
	}
	return c.Payload, nil
}

// Delete removes one record.
func (s *Store) Delete(recordID string) error {
	if !validID(recordID) {
		return fmt.Errorf("delete record %q: %w", recordID, ErrNotFound)
	}
	if err := os.Remove(s.recordPath(recordID)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete record %s: %w", recordID, ErrNotFound)
		}
		return fmt.Errorf("delete record %s: %w", recordID, err)
	}
	return nil
}

func (s *Store) loadKey(id string) (*rsa.PrivateKey, error) {
	if !validID(id) {
		return nil, fmt.Errorf("storage key %q: %w", id, ErrNotFound)
	}
	b, err := os.ReadFile(s.keyPath(id))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("storage key %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("storage key %s: %w", id, err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("storage key %s: no PRIVATE KEY block: %w", id, ErrMalformed)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("storage key %s: %w: %w", id, ErrMalformed, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("storage key %s is %T: %w", id, k, ErrUnsupportedAlgorithm)
	}
	return rk, nil
}

func (s *Store) keyPath(id string) string    { return filepath.Join(s.dir, "keys", id+".pem") }
func (s *Store) recordPath(id string) string { return filepath.Join(s.dir, "records", id+".env") }

func keyID(pub crypto.PublicKey) (string, error) {
	sig, err := PublicKeySignature(pub)
	if err != nil {
		return "", err
	}
	return keyIDFromSignature(sig)
}

func keyIDFromSignature(sig string) (string, error) {
	raw, ok := strings.CutPrefix(sig, "SHA256:")
	if !ok {
		return "", fmt.Errorf("public key signature %q: %w", sig, ErrMalformed)
	}
	sum, err := base64.RawStdEncoding.DecodeString(raw)
	if err != nil || len(sum) != 32 {
		return "", fmt.Errorf("public key signature %q: %w", sig, ErrMalformed)
	}
	return hex.EncodeToString(sum), nil
}

// validID accepts hex key ids and UUID record ids, nothing that could name
// another path.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r == '-') {
			return false
		}
	}
	return true
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
