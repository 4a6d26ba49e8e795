package auditlog

import "errors"

var (
	// ErrClosed: the log was closed.
	ErrClosed = errors.New("audit log closed")
	// ErrUnwritable: a record could not be made durable (disk full,
	// read-only, I/O error). The caller must fail closed; the log retries on
	// the next Append and recovers once the storage is writable again.
	ErrUnwritable = errors.New("audit log unwritable")
	// ErrFull: the log reached its quota, or its file system is out of
	// space; always wrapped together with ErrUnwritable.
	ErrFull = errors.New("audit log full")
	// ErrTampered: the log does not match its leaf hashes or its signed
	// checkpoints.
	ErrTampered = errors.New("audit log tampered")
	// ErrKey: the checkpoint signing or verifier key is missing or malformed.
	ErrKey = errors.New("audit signing key")
)
