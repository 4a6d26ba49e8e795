//go:build cgo

package keystore_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"

	"github.com/ThalesGroup/crypto11"

	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

func TestPKCS11WrongPIN(t *testing.T) {
	requireSoftHSM(t)
	tests := []struct {
		name string
		pin  string
	}{
		{"wrong", "4321"},
		{"too short", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := keystore.OpenPKCS11(keystore.PKCS11Config{Module: softhsmModule, TokenLabel: lockedToken, PIN: tt.pin})
			if !errors.Is(err, keystore.ErrWrongPassword) {
				if ks != nil {
					ks.Close()
				}
				t.Fatalf("err = %v, want ErrWrongPassword", err)
			}
		})
	}
}

// TestPKCS11KeysStayOnToken checks that generated keys are sensitive and
// non-extractable token objects, that the credential holds only a handle
// (no software key), and that importing a software key is refused.
func TestPKCS11KeysStayOnToken(t *testing.T) {
	requireSoftHSM(t)
	ks, err := keystore.OpenPKCS11(keystore.PKCS11Config{Module: softhsmModule, TokenLabel: tokenLabel, PIN: tokenPIN})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ks.Close() })
	for _, kt := range []keystore.KeyType{keystore.RSA2048, keystore.ECDSAP256} {
		t.Run(string(kt), func(t *testing.T) {
			label := "hsm-" + string(kt)
			cred, err := ks.Generate(label, kt)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ks.Delete(label) })
			switch cred.Signer.(type) {
			case *rsa.PrivateKey, *ecdsa.PrivateKey:
				t.Fatalf("credential holds a software key %T", cred.Signer)
			}
			attrs, err := ks.Context().GetAttributes(cred.Signer, []crypto11.AttributeType{crypto11.CkaSensitive, crypto11.CkaExtractable})
			if err != nil {
				t.Fatal(err)
			}
			if v := attrs[crypto11.CkaSensitive].Value; len(v) != 1 || v[0] != 1 {
				t.Errorf("CKA_SENSITIVE = %v, want true", v)
			}
			if v := attrs[crypto11.CkaExtractable].Value; len(v) != 1 || v[0] != 0 {
				t.Errorf("CKA_EXTRACTABLE = %v, want false", v)
			}
		})
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.Import("soft", key, nil); !errors.Is(err, keystore.ErrUnsupported) {
		t.Fatalf("Import: err = %v, want ErrUnsupported", err)
	}
}
