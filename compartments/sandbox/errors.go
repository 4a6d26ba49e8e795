package sandbox

import "errors"

var (
	// ErrInvalidSpec: the Spec cannot be confined as asked (bad name, root
	// uid, id clash with the user namespace mapping, ...).
	ErrInvalidSpec = errors.New("sandbox: invalid spec")
	// ErrLayerMissing: a required confinement layer is not available on
	// this host; Check wraps it with the layer's name.
	ErrLayerMissing = errors.New("sandbox: confinement layer missing")
	// ErrNoNetAttacher: the spec asks for a veth but the runtime has no
	// NetAttacher to build it; the runtime refuses rather than start the
	// compartment with less network confinement than asked.
	ErrNoNetAttacher = errors.New("sandbox: no network attacher for veth")
	// ErrStart: the runtime failed to start the compartment.
	ErrStart = errors.New("sandbox: start failed")
	// ErrNoRunc: the runc go.mod pins is not where the runtime looks for
	// it (bin/runc, beside e2sgated), or a different runc is there. There
	// is no fallback to a runc on PATH: `make build` builds the pinned one.
	ErrNoRunc = errors.New("sandbox: pinned runc missing (run `make build`)")
)

var (
	// ErrUnsupported: the runtime cannot provide what the Spec asks for
	// (e.g. containerd cannot hand file descriptors to a task).
	ErrUnsupported = errors.New("sandbox: not supported by this runtime")
	// ErrExit: the program ended with a non-zero status.
	ErrExit = errors.New("sandbox: program exited")
)
