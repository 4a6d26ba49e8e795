// Package envelope implements sealed envelopes after TRISA's SecureEnvelope:
// each record is encrypted with its own random AES-256-GCM key and
// authenticated with its own random HMAC-SHA256 secret; key and secret are
// then sealed with the recipient's RSA public key (RSA-OAEP, SHA-512).
//
// An envelope moves through these states:
//
//	sealing:  Clear --Encrypt--> Unsealed --Seal--> Sealed
//	opening:  Sealed --Unseal--> Unsealed --Decrypt--> Clear
//
// Clear is an in-memory state (the *Clear type); Unsealed and Sealed are
// *pb.SecureEnvelope values and encode to the TRISA wire format. An error
// envelope carries only id, timestamp and a *pb.Error.
//
// Opening verifies the HMAC over the encrypted payload in constant time
// before any decryption is attempted.
package envelope

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/e2sgate/e2sgate/internal/document/envelope/pb"
)

// Algorithm names as written in the envelope (TRISA's strings).
const (
	AlgorithmAES256GCM  = "AES256-GCM"
	AlgorithmHMACSHA256 = "HMAC-SHA256"
)

const (
	keySize    = 32 // AES-256
	secretSize = 32 // HMAC-SHA256 secret
	nonceSize  = 12 // GCM standard nonce, appended after ciphertext||tag
	tagSize    = 16
)

// State is where an envelope stands between plain payload and sealed record.
type State uint8

// Envelope states.
const (
	StateUnknown   State = iota
	StateClear           // payload decrypted (in memory only)
	StateUnsealed        // key and secret in the clear, payload encrypted
	StateSealed          // key and secret sealed to a public key
	StateError           // error envelope, no payload
	StateCorrupted       // fields inconsistent with any state
)

var stateNames = [...]string{"unknown", "clear", "unsealed", "sealed", "error", "corrupted"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return stateNames[StateUnknown]
}

// Clear is an envelope whose payload is in the clear.
type Clear struct {
	ID        string
	Timestamp time.Time
	Payload   []byte
}

// NewClear wraps payload in a clear envelope with a fresh UUID4 id and the
// current time.
func NewClear(payload []byte) (*Clear, error) {
	id, err := newUUID4()
	if err != nil {
		return nil, fmt.Errorf("new envelope id: %w", err)
	}
	return &Clear{ID: id, Timestamp: time.Now().UTC(), Payload: payload}, nil
}

// StateOf classifies a wire envelope.
func StateOf(env *pb.SecureEnvelope) State {
	if env == nil {
		return StateUnknown
	}
	hasCrypto := len(env.GetPayload()) > 0 || len(env.GetEncryptionKey()) > 0 || len(env.GetHmacSecret()) > 0 || len(env.GetHmac()) > 0
	if env.GetError() != nil && !hasCrypto {
		return StateError
	}
	if env.GetError() != nil || len(env.GetPayload()) == 0 || len(env.GetEncryptionKey()) == 0 ||
		len(env.GetHmacSecret()) == 0 || len(env.GetHmac()) == 0 {
		return StateCorrupted
	}
	if env.GetSealed() {
		if env.GetPublicKeySignature() == "" {
			return StateCorrupted
		}
		return StateSealed
	}
	return StateUnsealed
}

// Encrypt moves a clear envelope to the unsealed state: it draws a fresh
// AES-256 key, HMAC secret and nonce, encrypts the payload and computes the
// HMAC over ciphertext||tag||nonce.
func (c *Clear) Encrypt() (*pb.SecureEnvelope, error) {
	if c == nil || c.ID == "" {
		return nil, fmt.Errorf("encrypt: envelope without id: %w", ErrMalformed)
	}
	key := make([]byte, keySize)
	secret := make([]byte, secretSize)
	nonce := make([]byte, nonceSize)
	for _, b := range [][]byte{key, secret, nonce} {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("encrypt: random: %w", err)
		}
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	ct := aead.Seal(make([]byte, 0, len(c.Payload)+tagSize+nonceSize), nonce, c.Payload, nil)
	ct = append(ct, nonce...)
	return &pb.SecureEnvelope{
		Id:                  c.ID,
		Timestamp:           c.Timestamp.UTC().Format(time.RFC3339Nano),
		Payload:             ct,
		EncryptionKey:       key,
		EncryptionAlgorithm: AlgorithmAES256GCM,
		Hmac:                macOf(secret, ct),
		HmacSecret:          secret,
		HmacAlgorithm:       AlgorithmHMACSHA256,
	}, nil
}

// Seal moves an unsealed envelope to the sealed state by encrypting its key
// and secret to pub (an *rsa.PublicKey) with RSA-OAEP SHA-512. env is not
// modified.
func Seal(env *pb.SecureEnvelope, pub crypto.PublicKey) (*pb.SecureEnvelope, error) {
	if st := StateOf(env); st != StateUnsealed {
		return nil, fmt.Errorf("seal %s envelope: %w", st, ErrState)
	}
	rpub, ok := pub.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("seal to %T: %w", pub, ErrUnsupportedAlgorithm)
	}
	sig, err := PublicKeySignature(rpub)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := proto.CloneOf(env)
	if out.EncryptionKey, err = rsa.EncryptOAEP(sha512.New(), rand.Reader, rpub, env.GetEncryptionKey(), nil); err != nil {
		return nil, fmt.Errorf("seal encryption key: %w", err)
	}
	if out.HmacSecret, err = rsa.EncryptOAEP(sha512.New(), rand.Reader, rpub, env.GetHmacSecret(), nil); err != nil {
		return nil, fmt.Errorf("seal hmac secret: %w", err)
	}
	out.Sealed = true
	out.PublicKeySignature = sig
	return out, nil
}

// Unseal moves a sealed envelope to the unsealed state with the private key
// matching its public_key_signature. key may be any crypto.Decrypter that
// supports RSA-OAEP with SHA-512 (an in-memory *rsa.PrivateKey, or a token
// key where the token supports that mechanism). env is not modified.
func Unseal(env *pb.SecureEnvelope, key crypto.Decrypter) (*pb.SecureEnvelope, error) {
	if st := StateOf(env); st != StateSealed {
		return nil, fmt.Errorf("unseal %s envelope: %w", st, ErrState)
	}
	sig, err := PublicKeySignature(key.Public())
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	if !hmac.Equal([]byte(sig), []byte(env.GetPublicKeySignature())) {
		return nil, fmt.Errorf("unseal with key %s, envelope sealed to %s: %w", sig, env.GetPublicKeySignature(), ErrWrongKey)
	}
	opts := &rsa.OAEPOptions{Hash: crypto.SHA512}
	out := proto.CloneOf(env)
	if out.EncryptionKey, err = key.Decrypt(rand.Reader, env.GetEncryptionKey(), opts); err != nil {
		// The envelope names our key, so the wrapped key was altered.
		return nil, fmt.Errorf("unseal encryption key: %w: %w", ErrDecrypt, err)
	}
	if out.HmacSecret, err = key.Decrypt(rand.Reader, env.GetHmacSecret(), opts); err != nil {
		return nil, fmt.Errorf("unseal hmac secret: %w: %w", ErrDecrypt, err)
	}
	out.Sealed = false
	out.PublicKeySignature = ""
	return out, nil
}

// Decrypt moves an unsealed envelope to the clear state. The HMAC is checked
// in constant time first; only if it verifies is AES-GCM decryption tried.
func Decrypt(env *pb.SecureEnvelope) (*Clear, error) {
	if st := StateOf(env); st != StateUnsealed {
		return nil, fmt.Errorf("decrypt %s envelope: %w", st, ErrState)
	}
	if a := env.GetEncryptionAlgorithm(); a != AlgorithmAES256GCM {
		return nil, fmt.Errorf("decrypt: encryption algorithm %q: %w", a, ErrUnsupportedAlgorithm)
	}
	if a := env.GetHmacAlgorithm(); a != AlgorithmHMACSHA256 {
		return nil, fmt.Errorf("decrypt: hmac algorithm %q: %w", a, ErrUnsupportedAlgorithm)
	}
	if len(env.GetEncryptionKey()) != keySize {
		return nil, fmt.Errorf("decrypt: key of %d bytes: %w", len(env.GetEncryptionKey()), ErrMalformed)
	}
	ts, err := time.Parse(time.RFC3339Nano, env.GetTimestamp())
	if err != nil {
		return nil, fmt.Errorf("decrypt: timestamp: %w: %w", ErrMalformed, err)
	}
	ct := env.GetPayload()
	if !hmac.Equal(macOf(env.GetHmacSecret(), ct), env.GetHmac()) {
		return nil, fmt.Errorf("decrypt envelope %s: %w", env.GetId(), ErrHMACMismatch)
	}
	if len(ct) < tagSize+nonceSize {
		return nil, fmt.Errorf("decrypt: payload of %d bytes: %w", len(ct), ErrMalformed)
	}
	aead, err := newGCM(env.GetEncryptionKey())
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	split := len(ct) - nonceSize
	plain, err := aead.Open(nil, ct[split:], ct[:split], nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt envelope %s: %w", env.GetId(), ErrDecrypt)
	}
	return &Clear{ID: env.GetId(), Timestamp: ts, Payload: plain}, nil
}

// SealPayload is NewClear, Encrypt and Seal in one step.
func SealPayload(payload []byte, pub crypto.PublicKey) (*pb.SecureEnvelope, error) {
	c, err := NewClear(payload)
	if err != nil {
		return nil, err
	}
	u, err := c.Encrypt()
	if err != nil {
		return nil, err
	}
	return Seal(u, pub)
}

// Open is Unseal and Decrypt in one step.
func Open(env *pb.SecureEnvelope, key crypto.Decrypter) (*Clear, error) {
	u, err := Unseal(env, key)
	if err != nil {
		return nil, err
	}
	return Decrypt(u)
}

// NewError builds an error envelope answering the envelope with id.
func NewError(id string, code pb.Error_Code, message string, retry bool) *pb.SecureEnvelope {
	return &pb.SecureEnvelope{
		Id:        id,
		Timestamp: time.Now().UTC().Format(time.RFC3339Nano),
		Error:     &pb.Error{Code: code, Message: message, Retry: retry},
	}
}

// Marshal encodes an envelope in the protobuf wire format.
func Marshal(env *pb.SecureEnvelope) ([]byte, error) {
	b, err := proto.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("marshal envelope: %w", err)
	}
	return b, nil
}

// Unmarshal decodes an envelope from the protobuf wire format.
func Unmarshal(b []byte) (*pb.SecureEnvelope, error) {
	env := new(pb.SecureEnvelope)
	if err := proto.Unmarshal(b, env); err != nil {
		return nil, fmt.Errorf("unmarshal envelope: %w: %w", ErrMalformed, err)
	}
	return env, nil
}

// PublicKeySignature identifies a public key the way TRISA does:
// "SHA256:" + unpadded standard base64 of SHA-256 over the DER
// SubjectPublicKeyInfo.
func PublicKeySignature(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("public key signature: %w: %w", ErrUnsupportedAlgorithm, err)
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]), nil
}

func macOf(secret, data []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write(data)
	return m.Sum(nil)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

func newUUID4() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]), nil
}
