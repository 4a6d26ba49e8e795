package purchasing

import "errors"

var (
	// ErrBadName: a record name the store does not accept.
	ErrBadName = errors.New("bad record name")
	// ErrEnrolment: the enrolment file is refused.
	ErrEnrolment = errors.New("bad enrolment")
	// ErrReplayed: a signed request's nonce was used before.
	ErrReplayed = errors.New("request replayed")
	// ErrReplayFull: the replay guard holds as many live nonces as it may.
	ErrReplayFull = errors.New("replay guard full")
)
