package gateagent

import "errors"

var (
	// ErrBadRegistry: the registry file is malformed or refers to something
	// that does not exist.
	ErrBadRegistry = errors.New("bad registry")
	// ErrBadPolicy: the policy does not compile, or its own tests fail.
	ErrBadPolicy = errors.New("bad policy")
)

var (
	// ErrPluginAddr: a compartment's plugin address is not a socket in its
	// plugin directory (elsewhere, or a symlink).
	ErrPluginAddr = errors.New("plugin address refused")
	// ErrPluginPeer: the process listening on a plugin address is not the
	// compartment (SO_PEERCRED names another uid).
	ErrPluginPeer = errors.New("plugin peer refused")
)

// ErrSeccomp: the gate agent could not install its own seccomp filter.
var ErrSeccomp = errors.New("gate agent seccomp filter")
