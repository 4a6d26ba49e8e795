package envelope

import "errors"

var (
	// ErrHMACMismatch means the HMAC over the encrypted payload does not
	// verify: the ciphertext, the HMAC or the secret was altered. It is
	// reported before any decryption is attempted.
	ErrHMACMismatch = errors.New("envelope: hmac mismatch")
	// ErrDecrypt means AES-GCM authentication of the payload failed.
	ErrDecrypt = errors.New("envelope: payload decryption failed")
	// ErrWrongKey means the envelope is sealed to a different public key
	// than the one offered, or the sealed key material does not decrypt.
	ErrWrongKey = errors.New("envelope: sealed to another key")
	// ErrUnsupportedAlgorithm names an encryption or HMAC algorithm, or a
	// sealing key type, that this package does not implement.
	ErrUnsupportedAlgorithm = errors.New("envelope: unsupported algorithm")
	// ErrState means the operation does not apply to the envelope's state
	// (e.g. unsealing an unsealed envelope, decrypting an error envelope).
	ErrState = errors.New("envelope: wrong state")
	// ErrMalformed means required fields are missing or have wrong sizes.
	ErrMalformed = errors.New("envelope: malformed")
	// ErrKeyErased means no storage key matches the record: the key was
	// deleted and the record is unreadable for good.
	ErrKeyErased = errors.New("envelope: storage key erased")
	// ErrNotFound means no record or storage key has that id.
	ErrNotFound = errors.New("envelope: not found")
)
