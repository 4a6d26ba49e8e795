package landlock

import "errors"

var (
	// ErrNoRules: the supervisor passed no rules (EnvName is unset). A
	// compartment program must treat this as fatal: it means it was started
	// outside the supervisor's sandbox.
	ErrNoRules = errors.New("landlock: no rules in " + EnvName)
	// ErrBadRules: the rules could not be decoded or are invalid.
	ErrBadRules = errors.New("landlock: invalid rules")
	// ErrUnsupported: the kernel has no usable Landlock (ABI < MinABI).
	ErrUnsupported = errors.New("landlock: not supported by the kernel")
)
