package gateagent

import "errors"

var (
	// ErrBadRegistry: the registry file is malformed or refers to something
	// that does not exist.
	ErrBadRegistry = errors.New("bad registry")
	// ErrBadPolicy: the policy does not compile, or its own tests fail.
	ErrBadPolicy = errors.New("bad policy")
)
