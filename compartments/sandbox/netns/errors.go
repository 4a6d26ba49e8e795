package netns

import "errors"

var (
	// ErrInvalid reports a sandbox.Network that cannot be set up as given.
	ErrInvalid = errors.New("netns: invalid network")
	// ErrExists reports that a namespace of that name already exists.
	ErrExists = errors.New("netns: namespace exists")
	// ErrUnavailable reports that network namespaces or nftables cannot be
	// set up on this host.
	ErrUnavailable = errors.New("netns: network layer unavailable")
	// ErrClosed reports use of a Namespace or Host after Close.
	ErrClosed = errors.New("netns: closed")
)
