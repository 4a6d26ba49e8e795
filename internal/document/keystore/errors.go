package keystore

import "errors"

var (
	// ErrWrongPassword means the keystore password or token PIN is wrong.
	ErrWrongPassword = errors.New("keystore: wrong password")
	// ErrNotFound means no credential has that label.
	ErrNotFound = errors.New("keystore: credential not found")
	// ErrExists means a credential with that label already exists.
	ErrExists = errors.New("keystore: credential exists")
	// ErrInvalidLabel means a label is empty, too long or has characters
	// other than letters, digits, '.', '_' and '-'.
	ErrInvalidLabel = errors.New("keystore: invalid label")
	// ErrKeyMismatch means the chain's leaf certificate is not for the
	// credential's key.
	ErrKeyMismatch = errors.New("keystore: certificate does not match key")
	// ErrUnsupported means the backend cannot do this (e.g. importing a
	// private key into a PKCS#11 token, where keys are generated on the token
	// and never cross its boundary), or the key type is not supported.
	ErrUnsupported = errors.New("keystore: unsupported")
	// ErrNotDecrypter means the credential's key cannot decrypt (ECDSA).
	ErrNotDecrypter = errors.New("keystore: key cannot decrypt")
	// ErrMalformed means a keystore file does not parse.
	ErrMalformed = errors.New("keystore: malformed")
)
