// Package manifest is where compartments declare themselves. Each
// compartment has a tiny package beside its code (compartments/NAME/compartment,
// outside/compartment, inside/compartment) whose init calls Register with its
// Manifest; compartments/builtins imports them all. Config defaults, the
// config sections, image building, the supervisor's sandbox specs, the SOCKS
// wiring and the link tests are derived from the registered manifests, so
// adding a compartment is one new package and one line in builtins.
//
// This package and the declarations link only the standard library: a
// compartment's program may import its own declaration without carrying any
// other compartment's code.
package manifest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Network is how a compartment reaches the network.
type Network string

const (
	// NetNone: no interface at all, not even loopback.
	NetNone Network = "none"
	// NetLoopback: a private loopback only.
	NetLoopback Network = "loopback"
	// NetVeth: a veth into the internal network, with a connect allowlist
	// (the config's internal_network.allow and the SOCKS filters'
	// destinations).
	NetVeth Network = "veth"
)

// Mount is a host directory the supervisor mounts into the compartment
// besides its own plugin, gate and data directories.
type Mount string

const (
	// MountStaticSite: the storefront's static files, read-only.
	MountStaticSite Mount = "static-site"
	// MountSpool: the back-office spool, writable, when the config puts it
	// outside the compartment's data directory.
	MountSpool Mount = "back-office-spool"
)

// Socket is a listening socket the supervisor binds and hands to the
// compartment as an extra file (fd 3 onwards, in this order).
type Socket string

const (
	// SocketWeb: the web front's TCP listener.
	SocketWeb Socket = "web"
	// SocketSocks: one SOCKS listener per compartment that reaches the
	// network through this one (see Manifest.SocksVia).
	SocketSocks Socket = "socks"
)

// Limits are a compartment's default resource limits.
type Limits struct {
	MemoryMB   int64
	Pids       int64
	CPUPercent int
}

// Manifest declares one compartment.
type Manifest struct {
	Name  string // also its program's name: cmd/NAME, /bin/NAME in its image
	Order int    // start order, lowest first
	// UID, GID, Label and Limits are the defaults of its config section
	// (compartments.NAME).
	UID, GID int
	Label    string
	Limits   Limits
	// Section is the configuration handed to the program as JSON: "" for
	// none, else the name of the supervisor's section builder.
	Section string
	Network Network
	Mounts  []Mount
	Sockets []Socket
	// SocksVia names the compartment whose SOCKS filter is this one's only
	// way out: the supervisor binds a listener for it, hands that listener
	// to SocksVia and mounts the socket's directory read-only here.
	SocksVia string
	// Code are the module-relative packages that implement the compartment;
	// no other compartment's program may link them.
	Code []string
	// MayNotLink are further module-relative packages its program must not
	// link.
	MayNotLink []string
	// Events are the audit events the compartment may report on its stdout
	// ({"e2s_event": ...} lines); the supervisor relays no other.
	Events []EventKind
	// ProvesIdentity: the compartment checks a person's proof itself (a
	// signature under a registered key) and may name the person to the
	// gate — in its answers (protocol.ProvenUser) and as the user of the
	// calls it makes for that person. Any other caller's user is only a
	// claim: the gate records it as claimed_user and the policy sees no
	// user.
	ProvesIdentity bool
}

// EventKind is one kind of audit event a compartment reports, with the
// reason ids it may carry.
type EventKind struct {
	Kind    string
	Reasons []string
}

// AllowsEvent reports whether m declares events of kind with reason.
func (m *Manifest) AllowsEvent(kind, reason string) bool {
	for _, e := range m.Events {
		if e.Kind == kind {
			return slices.Contains(e.Reasons, reason)
		}
	}
	return false
}

// Program is the module-relative package of the compartment's program.
func (m *Manifest) Program() string { return "cmd/" + m.Name }

var (
	mu  sync.Mutex
	all = map[string]*Manifest{}
)

// Register declares a compartment; it panics on a nameless or duplicate
// manifest, as a compartment declared twice is a programming error.
func Register(m *Manifest) {
	mu.Lock()
	defer mu.Unlock()
	if m.Name == "" {
		panic("manifest: compartment without a name")
	}
	if _, dup := all[m.Name]; dup {
		panic(fmt.Sprintf("manifest: compartment %q registered twice", m.Name))
	}
	all[m.Name] = m
}

// Unregister removes a compartment; tests use it to undo a Register.
func Unregister(name string) {
	mu.Lock()
	defer mu.Unlock()
	delete(all, name)
}

// All returns the registered compartments in start order (then by name).
func All() []*Manifest {
	mu.Lock()
	defer mu.Unlock()
	ms := make([]*Manifest, 0, len(all))
	for _, m := range all {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *Manifest) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), strings.Compare(a.Name, b.Name))
	})
	return ms
}

// Names returns the registered compartments' names in start order.
func Names() []string {
	var ns []string
	for _, m := range All() {
		ns = append(ns, m.Name)
	}
	return ns
}

// Lookup returns the manifest of name, or nil.
func Lookup(name string) *Manifest {
	mu.Lock()
	defer mu.Unlock()
	return all[name]
}

// SocksCallers returns, in start order, the compartments that reach the
// network through via's SOCKS filter; their listeners are handed to via in
// this order.
func SocksCallers(via string) []string {
	var ns []string
	for _, m := range All() {
		if m.SocksVia == via {
			ns = append(ns, m.Name)
		}
	}
	return ns
}

// Forbidden returns the module-relative packages m's program must not link:
// every other compartment's code and m's own MayNotLink.
func (m *Manifest) Forbidden() []string {
	bad := slices.Clone(m.MayNotLink)
	for _, o := range All() {
		if o.Name != m.Name {
			bad = append(bad, o.Code...)
		}
	}
	return bad
}
