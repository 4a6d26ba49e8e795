package certstore

import "errors"

var (
	// ErrNotFound means no partner certificate matches.
	ErrNotFound = errors.New("certstore: not found")
	// ErrInvalidID means a partner id is empty, too long or has characters
	// other than letters, digits, '.', '_' and '-' (ids name files).
	ErrInvalidID = errors.New("certstore: invalid partner id")
	// ErrRevoked means the certificate is marked revoked.
	ErrRevoked = errors.New("certstore: certificate revoked")
	// ErrMalformed means a stored file does not parse.
	ErrMalformed = errors.New("certstore: malformed")
	// ErrUntrusted means an exchanged certificate neither chains to the
	// trust roots nor may be trusted on first use under the policy.
	ErrUntrusted = errors.New("certstore: certificate not trusted")
	// ErrCertificateChanged means a partner presented a certificate other
	// than the stored one, and the new one is trusted on first use only.
	ErrCertificateChanged = errors.New("certstore: partner certificate changed")
	// ErrIdentityMismatch means the certificate does not name the partner id
	// the message claims (subject CN, DNS, e-mail or URI SAN).
	ErrIdentityMismatch = errors.New("certstore: certificate does not name the partner")
	// ErrUnexpectedMessage means a co-ordination message is of the wrong
	// type, addressed to someone else, or answers another request.
	ErrUnexpectedMessage = errors.New("certstore: unexpected co-ordination message")
	// ErrStale means a co-ordination message is too old or from the future.
	ErrStale = errors.New("certstore: stale co-ordination message")
	// ErrExpired means the certificate is outside its validity period.
	ErrExpired = errors.New("certstore: certificate expired or not yet valid")
)
