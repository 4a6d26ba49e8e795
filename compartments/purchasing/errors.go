package purchasing

import "errors"

var (
	// ErrBadName: a record name the store does not accept.
	ErrBadName = errors.New("bad record name")
	// ErrEnrolment: the enrolment file is refused.
	ErrEnrolment = errors.New("bad enrolment")
)
