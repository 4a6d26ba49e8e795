// Package sandbox turns a compartment's confinement spec into a running
// process. The supervisor builds one Spec per compartment and asks a Runtime
// to start it; every Runtime must produce the same confinement from the same
// Spec, or refuse to start with an error naming the layer it cannot provide.
package sandbox

import (
	"context"
	"io"
	"net/netip"
	"os"

	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
)

// NetMode says which network a compartment is attached to.
type NetMode string

const (
	// NetNone: no interface at all, not even loopback (the outside web
	// front serves only on the listening socket it is handed).
	NetNone NetMode = "none"
	// NetLoopback: loopback only (function compartments).
	NetLoopback NetMode = "loopback"
	// NetVeth: a veth into the internal network (the inside compartment).
	NetVeth NetMode = "veth"
)

// Mount makes a host path visible inside the compartment. Target defaults
// to Source, so a program sees the same paths under every runtime.
type Mount struct {
	Source   string
	Target   string
	Writable bool
}

// Endpoint is one address a compartment may connect to.
type Endpoint struct {
	Prefix netip.Prefix
	Port   uint16 // 0 means any port
}

// Network is a compartment's network attachment and connect allowlist.
type Network struct {
	Mode NetMode
	// Address of the compartment's end of the veth (NetVeth only), e.g.
	// 10.77.0.2/24, and the host-side peer name the supervisor bridges.
	Address netip.Prefix
	// Allow lists what the compartment may connect to; everything else is
	// denied by nftables in its namespace and by the cgroup connect hooks.
	Allow []Endpoint
}

// Limits are the compartment's cgroup limits; zero means the runtime's
// default, never unlimited.
type Limits struct {
	MemoryBytes int64
	Pids        int64
	CPUPercent  int // of one core
}

// Spec is everything a runtime needs to start one compartment.
type Spec struct {
	Name   string // compartment name, e.g. "purchasing"
	Label  string // sensitivity label, for status and audit
	Binary string // host path of the compartment's static program
	Args   []string
	Env    []string
	UID    uint32 // unprivileged ids the program runs as
	GID    uint32
	// Groups are supplementary groups of the program (the gate agent: each
	// compartment's gid, which may reach that compartment's plugin socket).
	Groups []uint32
	// PeerUIDs and PeerGIDs are host ids that appear as themselves in the
	// program's user namespace (every other id shows as the overflow id):
	// what SO_PEERCRED reports of a peer running as one is its real id. The
	// gate agent checks its callers' uids this way. Groups must be among
	// PeerGIDs.
	PeerUIDs []uint32
	PeerGIDs []uint32
	Mounts   []Mount
	Network  Network
	Limits   Limits
	// ExtraFiles become fd 3, 4, ... in the compartment (for the outside
	// compartment: the listening socket the supervisor bound).
	ExtraFiles []*os.File
	// Stdin is the program's standard input (the gate agent's control
	// channel); nil: none.
	Stdin io.Reader
	// Stdout gets the program's standard output as it is written. An
	// *os.File here may be closed by the caller as soon as Start returned
	// (the supervisor does, to read EOF when the program is gone).
	Stdout io.Writer
	Stderr io.Writer

	// Rootfs is the compartment's image (images.Build). When empty, the
	// runc runtime builds it from Binary under its ImageDir.
	Rootfs string
	// Landlock adds to the file and port rules the program applies to
	// itself at start (landlock.RestrictSelf); see Spec.LandlockRules for
	// the defaults every compartment gets.
	Landlock landlock.Rules
}

// Process is a started compartment.
type Process interface {
	Pid() int    // host pid of the compartment's program
	Wait() error // blocks until the program exits
	Signal(sig os.Signal) error
	Layers() []string // confinement layers actually enforced
	Close() error     // removes what Start created (cgroups, mounts, netns)
}

// Runtime starts compartments.
type Runtime interface {
	Name() string
	Start(ctx context.Context, s Spec) (Process, error)
}
