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

// KeyRing holds storage keys, each named by its public key signature (see
// PublicKeySignature), which is what sealed envelopes carry.
type KeyRing interface {
	// NewKey generates a storage key and returns its public key signature.
	NewKey() (string, error)
	// Public returns the public key; ErrNotFound if there is none.
	Public(signature string) (crypto.PublicKey, error)
	// Decrypter returns the private key; ErrNotFound if there is none,
	// e.g. because it was deleted.
	Decrypter(signature string) (crypto.Decrypter, error)
	// Delete destroys the key; ErrNotFound if there is none.
	Delete(signature string) error
}

// Store keeps records at rest as sealed envelopes under dir/records, each
// sealed to one storage key of a KeyRing. Deleting a storage key erases
// every record sealed to it: the per-record AES key and HMAC secret can no
// longer be unsealed, so the record is unreadable for good (crypto-erasure).
type Store struct {
	dir  string
	keys KeyRing
}

// StoreOption configures a Store.
type StoreOption func(*Store)

// WithKeyRing keeps the storage keys in kr instead of dir/keys.
func WithKeyRing(kr KeyRing) StoreOption { return func(s *Store) { s.keys = kr } }

// OpenStore opens (creating if needed) a record store in dir. Unless
// WithKeyRing says otherwise, storage keys are DirKeyRing(dir/keys,
// DefaultStorageKeyBits).
func OpenStore(dir string, opts ...StoreOption) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "records"), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{dir: dir}
	for _, o := range opts {
		o(s)
	}
	if s.keys == nil {
		kr, err := NewDirKeyRing(filepath.Join(dir, "keys"), DefaultStorageKeyBits)
		if err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
		s.keys = kr
	}
	return s, nil
}

// NewKey generates a storage key and returns its id (public key signature).
func (s *Store) NewKey() (string, error) {
	id, err := s.keys.NewKey()
	if err != nil {
		return "", fmt.Errorf("new storage key: %w", err)
	}
	return id, nil
}

// DeleteKey destroys a storage key. Every record sealed to it becomes
// unreadable; Get reports ErrKeyErased for them.
func (s *Store) DeleteKey(id string) error {
	if err := s.keys.Delete(id); err != nil {
		return fmt.Errorf("delete storage key %s: %w", id, err)
	}
	return nil
}

// Put seals plaintext to the storage key id and stores it; it returns the
// record id (the envelope id).
func (s *Store) Put(keyID string, plaintext []byte) (string, error) {
	pub, err := s.keys.Public(keyID)
	if err != nil {
		return "", fmt.Errorf("put record: storage key %s: %w", keyID, err)
	}
	env, err := SealPayload(plaintext, pub)
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
	if !validRecordID(recordID) {
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
	key, err := s.keys.Decrypter(env.GetPublicKeySignature())
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("get record %s: storage key %s: %w", recordID, env.GetPublicKeySignature(), ErrKeyErased)
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
	if !validRecordID(recordID) {
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

func (s *Store) recordPath(id string) string { return filepath.Join(s.dir, "records", id+".env") }

// validRecordID accepts UUIDs, nothing that could name another path.
func validRecordID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r == '-') {
			return false
		}
	}
	return true
}

// DirKeyRing keeps RSA storage keys as PKCS#8 PEM files (mode 0600) in a
// directory, one per key, named by the hex SHA-256 of the public key. Put
// the directory where deleting a file really removes it from reach (not in
// backups or snapshots), or erasure is only as good as those copies.
type DirKeyRing struct {
	dir  string
	bits int
}

var _ KeyRing = (*DirKeyRing)(nil)

// NewDirKeyRing opens (creating if needed) a key directory; new keys are
// RSA keys of the given size.
func NewDirKeyRing(dir string, bits int) (*DirKeyRing, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("key ring %s: %w", dir, err)
	}
	return &DirKeyRing{dir: dir, bits: bits}, nil
}

// NewKey generates an RSA key and stores it.
func (k *DirKeyRing) NewKey() (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, k.bits)
	if err != nil {
		return "", fmt.Errorf("generate: %w", err)
	}
	sig, err := PublicKeySignature(&key.PublicKey)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("encode: %w", err)
	}
	path, err := k.path(sig)
	if err != nil {
		return "", err
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return sig, nil
}

// Public returns the public half of the key.
func (k *DirKeyRing) Public(sig string) (crypto.PublicKey, error) {
	key, err := k.load(sig)
	if err != nil {
		return nil, err
	}
	return key.Public(), nil
}

// Decrypter returns the key.
func (k *DirKeyRing) Decrypter(sig string) (crypto.Decrypter, error) {
	return k.load(sig)
}

// Delete removes the key file and syncs the directory.
func (k *DirKeyRing) Delete(sig string) error {
	path, err := k.path(sig)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return err
	}
	return syncDir(k.dir)
}

func (k *DirKeyRing) load(sig string) (*rsa.PrivateKey, error) {
	path, err := k.path(sig)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PRIVATE KEY block: %w", path, ErrMalformed)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrMalformed, err)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s holds %T: %w", path, key, ErrUnsupportedAlgorithm)
	}
	if got, _ := PublicKeySignature(&rk.PublicKey); got != sig {
		return nil, fmt.Errorf("%s holds key %s: %w", path, got, ErrMalformed)
	}
	return rk, nil
}

// path maps a public key signature to its file; anything that is not a
// well-formed signature is ErrNotFound.
func (k *DirKeyRing) path(sig string) (string, error) {
	raw, ok := strings.CutPrefix(sig, "SHA256:")
	if !ok {
		return "", ErrNotFound
	}
	sum, err := base64.RawStdEncoding.DecodeString(raw)
	if err != nil || len(sum) != 32 {
		return "", ErrNotFound
	}
	return filepath.Join(k.dir, hex.EncodeToString(sum)+".pem"), nil
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
