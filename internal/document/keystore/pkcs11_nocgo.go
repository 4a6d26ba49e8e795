//go:build !cgo

package keystore

import "fmt"

// PKCS11Config selects a token.
type PKCS11Config struct {
	Module     string
	TokenLabel string
	PIN        string
}

// PKCS11 is unavailable without cgo; OpenPKCS11 always fails.
type PKCS11 struct{ Keystore }

// OpenPKCS11 fails: the PKCS#11 backend needs cgo.
func OpenPKCS11(cfg PKCS11Config) (*PKCS11, error) {
	return nil, fmt.Errorf("open token %q: built without cgo: %w", cfg.TokenLabel, ErrUnsupported)
}
