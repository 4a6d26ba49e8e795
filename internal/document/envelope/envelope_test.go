package envelope_test

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/e2sgate/e2sgate/internal/document/envelope"
	"github.com/e2sgate/e2sgate/internal/document/envelope/pb"
	"github.com/e2sgate/e2sgate/internal/testutil"
)

var (
	keysOnce sync.Once
	keyA     *rsa.PrivateKey
	keyB     *rsa.PrivateKey
)

// testKeys returns two RSA-2048 keys shared by the package's tests.
func testKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keyA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if keyB, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return keyA, keyB
}

func TestSealOpenRoundTrip(t *testing.T) {
	a, _ := testKeys(t)
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", []byte{}},
		{"short", []byte("offer 4711: 3 x widget")},
		{"64KiB", bytes.Repeat([]byte{0xA5}, 64<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sealed, err := envelope.SealPayload(tt.payload, &a.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if got := envelope.StateOf(sealed); got != envelope.StateSealed {
				t.Fatalf("state after seal = %s, want sealed", got)
			}
			if len(tt.payload) > 0 && bytes.Contains(sealed.GetPayload(), tt.payload) {
				t.Fatal("payload visible in sealed envelope")
			}
			wire, err := envelope.Marshal(sealed)
			if err != nil {
				t.Fatal(err)
			}
			back, err := envelope.Unmarshal(wire)
			if err != nil {
				t.Fatal(err)
			}
			clear, err := envelope.Open(back, a)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(clear.Payload, tt.payload) {
				t.Fatalf("payload = %x, want %x", clear.Payload, tt.payload)
			}
			if clear.ID != sealed.GetId() {
				t.Fatalf("id = %q, want %q", clear.ID, sealed.GetId())
			}
		})
	}
}

func TestStateTransitions(t *testing.T) {
	a, _ := testKeys(t)
	c, err := envelope.NewClear([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	unsealed, err := c.Encrypt()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := envelope.Seal(unsealed, &a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	errEnv := envelope.NewError(c.ID, pb.Error_REJECTED, "unknown beneficiary", false)

	tests := []struct {
		name    string
		env     *pb.SecureEnvelope
		want    envelope.State
		op      func(*pb.SecureEnvelope) error
		wantErr error
	}{
		{"unsealed is unsealed", unsealed, envelope.StateUnsealed, nil, nil},
		{"sealed is sealed", sealed, envelope.StateSealed, nil, nil},
		{"error envelope", errEnv, envelope.StateError, nil, nil},
		{"nil", nil, envelope.StateUnknown, nil, nil},
		{"missing hmac", func() *pb.SecureEnvelope { e := proto.CloneOf(sealed); e.Hmac = nil; return e }(), envelope.StateCorrupted, nil, nil},
		{"sealed without key signature", func() *pb.SecureEnvelope { e := proto.CloneOf(sealed); e.PublicKeySignature = ""; return e }(), envelope.StateCorrupted, nil, nil},
		{"seal sealed", sealed, envelope.StateSealed, func(e *pb.SecureEnvelope) error { _, err := envelope.Seal(e, &a.PublicKey); return err }, envelope.ErrState},
		{"unseal unsealed", unsealed, envelope.StateUnsealed, func(e *pb.SecureEnvelope) error { _, err := envelope.Unseal(e, a); return err }, envelope.ErrState},
		{"decrypt sealed", sealed, envelope.StateSealed, func(e *pb.SecureEnvelope) error { _, err := envelope.Decrypt(e); return err }, envelope.ErrState},
		{"decrypt error envelope", errEnv, envelope.StateError, func(e *pb.SecureEnvelope) error { _, err := envelope.Decrypt(e); return err }, envelope.ErrState},
		{"seal to ecdsa key", unsealed, envelope.StateUnsealed, func(e *pb.SecureEnvelope) error {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			_, err := envelope.Seal(e, &k.PublicKey)
			return err
		}, envelope.ErrUnsupportedAlgorithm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := envelope.StateOf(tt.env); got != tt.want {
				t.Fatalf("StateOf = %s, want %s", got, tt.want)
			}
			if tt.op == nil {
				return
			}
			if err := tt.op(tt.env); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
	// Seal and Unseal must not modify their input.
	if envelope.StateOf(unsealed) != envelope.StateUnsealed || envelope.StateOf(sealed) != envelope.StateSealed {
		t.Fatal("Seal or Unseal modified its input envelope")
	}
	if errEnv.GetError().GetCode() != pb.Error_REJECTED || errEnv.GetId() != c.ID {
		t.Fatalf("error envelope = %v", errEnv)
	}
}

// TestTamper flips one byte in each part of an envelope and checks that
// opening fails with the error of the check that must catch it. A flipped
// ciphertext, tag or nonce byte must be caught by the HMAC, before AES-GCM
// decryption is ever attempted (ErrHMACMismatch, not ErrDecrypt).
func TestTamper(t *testing.T) {
	a, _ := testKeys(t)
	c, err := envelope.NewClear([]byte("settlement 2026-11-23: 1200.00 EUR"))
	if err != nil {
		t.Fatal(err)
	}
	unsealed, err := c.Encrypt()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := envelope.Seal(unsealed, &a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		if i < 0 {
			i += len(b)
		}
		b[i] ^= 0x01
		return b
	}
	n := len(unsealed.GetPayload())
	tests := []struct {
		name   string
		base   *pb.SecureEnvelope
		mutate func(*pb.SecureEnvelope)
		want   error
	}{
		{"ciphertext byte", unsealed, func(e *pb.SecureEnvelope) { e.Payload = flip(e.Payload, 0) }, envelope.ErrHMACMismatch},
		{"tag byte", unsealed, func(e *pb.SecureEnvelope) { e.Payload = flip(e.Payload, n-12-1) }, envelope.ErrHMACMismatch},
		{"nonce byte", unsealed, func(e *pb.SecureEnvelope) { e.Payload = flip(e.Payload, -1) }, envelope.ErrHMACMismatch},
		{"truncated payload", unsealed, func(e *pb.SecureEnvelope) { e.Payload = e.Payload[:n-1] }, envelope.ErrHMACMismatch},
		{"hmac byte", unsealed, func(e *pb.SecureEnvelope) { e.Hmac = flip(e.Hmac, 5) }, envelope.ErrHMACMismatch},
		{"hmac secret byte", unsealed, func(e *pb.SecureEnvelope) { e.HmacSecret = flip(e.HmacSecret, 0) }, envelope.ErrHMACMismatch},
		{"encryption key byte", unsealed, func(e *pb.SecureEnvelope) { e.EncryptionKey = flip(e.EncryptionKey, 0) }, envelope.ErrDecrypt},
		{"ciphertext with recomputed hmac", unsealed, func(e *pb.SecureEnvelope) {
			e.Payload = flip(e.Payload, 0)
			m := hmac.New(sha256.New, e.HmacSecret)
			m.Write(e.Payload)
			e.Hmac = m.Sum(nil)
		}, envelope.ErrDecrypt},
		{"encryption algorithm", unsealed, func(e *pb.SecureEnvelope) { e.EncryptionAlgorithm = "AES128-GCM" }, envelope.ErrUnsupportedAlgorithm},
		{"hmac algorithm", unsealed, func(e *pb.SecureEnvelope) { e.HmacAlgorithm = "HMAC-SHA1" }, envelope.ErrUnsupportedAlgorithm},
		// The envelope names our key: a key that does not decrypt was altered.
		{"sealed key byte", sealed, func(e *pb.SecureEnvelope) { e.EncryptionKey = flip(e.EncryptionKey, 10) }, envelope.ErrDecrypt},
		{"sealed secret byte", sealed, func(e *pb.SecureEnvelope) { e.HmacSecret = flip(e.HmacSecret, 10) }, envelope.ErrDecrypt},
		{"sealed ciphertext byte", sealed, func(e *pb.SecureEnvelope) { e.Payload = flip(e.Payload, 3) }, envelope.ErrHMACMismatch},
		{"sealed hmac byte", sealed, func(e *pb.SecureEnvelope) { e.Hmac = flip(e.Hmac, 0) }, envelope.ErrHMACMismatch},
		{"public key signature", sealed, func(e *pb.SecureEnvelope) { e.PublicKeySignature = "SHA256:AAAA" }, envelope.ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := proto.CloneOf(tt.base)
			tt.mutate(env)
			var err error
			if env.GetSealed() {
				_, err = envelope.Open(env, a)
			} else {
				_, err = envelope.Decrypt(env)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	// The untampered envelopes still open, so the failures above are caused
	// by the mutations alone.
	if _, err := envelope.Decrypt(unsealed); err != nil {
		t.Fatalf("untampered unsealed envelope: %v", err)
	}
	if _, err := envelope.Open(sealed, a); err != nil {
		t.Fatalf("untampered sealed envelope: %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	a, b := testKeys(t)
	sealed, err := envelope.SealPayload([]byte("for a only"), &a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  func() *pb.SecureEnvelope
		want error
	}{
		// b's signature differs: refused before any RSA operation.
		{"other key", func() *pb.SecureEnvelope { return sealed }, envelope.ErrWrongKey},
		// Signature forged to b's: RSA-OAEP decryption with b fails, and
		// the envelope was altered (it names b's key), not sealed to
		// another key as far as it says.
		{"other key, forged signature", func() *pb.SecureEnvelope {
			e := proto.CloneOf(sealed)
			e.PublicKeySignature, _ = envelope.PublicKeySignature(&b.PublicKey)
			return e
		}, envelope.ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := envelope.Open(tt.env(), b); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestWireCompatibility decodes the protobuf bytes field by field, checks
// TRISA's field numbers and algorithm strings, and opens the envelope with an
// independent implementation of TRISA's algorithms (RSA-OAEP SHA-512 for key
// and secret, HMAC-SHA256 over the payload field, AES-256-GCM with the nonce
// in the last 12 bytes).
func TestWireCompatibility(t *testing.T) {
	a, _ := testKeys(t)
	plain := []byte("IVMS101 identity payload, say")
	sealed, err := envelope.SealPayload(plain, &a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := envelope.Marshal(sealed)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[protowire.Number][]byte{}
	var sealedFlag uint64
	for b := wire; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatal(protowire.ParseError(n))
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				t.Fatal(protowire.ParseError(m))
			}
			fields[num] = v
			b = b[m:]
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				t.Fatal(protowire.ParseError(m))
			}
			if num != 11 {
				t.Fatalf("unexpected varint field %d", num)
			}
			sealedFlag = v
			b = b[m:]
		default:
			t.Fatalf("field %d has wire type %d", num, typ)
		}
	}
	for num, want := range map[protowire.Number]string{4: "AES256-GCM", 7: "HMAC-SHA256"} {
		if got := string(fields[num]); got != want {
			t.Errorf("field %d = %q, want %q", num, got, want)
		}
	}
	if sealedFlag != 1 {
		t.Errorf("field 11 (sealed) = %d, want 1", sealedFlag)
	}
	if _, err := time.Parse(time.RFC3339Nano, string(fields[10])); err != nil {
		t.Errorf("field 10 (timestamp): %v", err)
	}
	if id := string(fields[1]); len(id) != 36 || id[14] != '4' {
		t.Errorf("field 1 (id) = %q, want a UUID4", id)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&a.PublicKey)
	sum := sha256.Sum256(spki)
	wantSig := "SHA256:" + strings.TrimRight(base64.StdEncoding.EncodeToString(sum[:]), "=")
	if got := string(fields[12]); got != wantSig {
		t.Errorf("field 12 = %q, want %q", got, wantSig)
	}

	key, err := rsa.DecryptOAEP(sha512.New(), nil, a, fields[3], nil)
	if err != nil {
		t.Fatalf("field 3 is not RSA-OAEP SHA-512: %v", err)
	}
	secret, err := rsa.DecryptOAEP(sha512.New(), nil, a, fields[6], nil)
	if err != nil {
		t.Fatalf("field 6 is not RSA-OAEP SHA-512: %v", err)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(fields[2])
	if !hmac.Equal(m.Sum(nil), fields[5]) {
		t.Fatal("field 5 is not HMAC-SHA256(field 6, field 2)")
	}
	blk, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(blk)
	p := fields[2]
	got, err := gcm.Open(nil, p[len(p)-12:], p[:len(p)-12], nil)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("field 2 is not AES-256-GCM ct||tag||nonce: %v", err)
	}
}

// TestPublicKeySignatureOpenSSL checks the key signature against one
// computed by openssl from the PEM public key.
func TestPublicKeySignatureOpenSSL(t *testing.T) {
	openssl := testutil.Requires(t, "openssl")
	a, _ := testKeys(t)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name string
		pub  crypto.PublicKey
	}{
		{"rsa", &a.PublicKey},
		{"ecdsa", &ec.PublicKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spki, err := x509.MarshalPKIXPublicKey(tt.pub)
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(t.TempDir(), "pub.pem")
			if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("sh", "-c", openssl+" pkey -pubin -in "+f+" -outform DER | "+openssl+" dgst -sha256 -binary | base64 -w0").Output()
			if err != nil {
				t.Fatal(err)
			}
			want := "SHA256:" + strings.TrimRight(string(out), "=\n")
			got, err := envelope.PublicKeySignature(tt.pub)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("signature = %s, openssl says %s", got, want)
			}
		})
	}
}
