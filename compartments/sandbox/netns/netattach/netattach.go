// Package netattach gives a compartment sandbox its network layers: it
// implements sandbox.NetAttacher with netns (veth into the internal
// network, default-drop nftables ruleset) and bpfguard (cgroup connect,
// sendmsg and sock_create programs), and routes the programs' denials to
// one callback (the supervisor's audit log).
//
//	host := netns.New(netns.Config{Logger: log})
//	runc := &sandbox.Runc{Net: netattach.New(host, audit, log), ...}
package netattach

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/compartments/sandbox/bpfguard"
	"github.com/e2sgate/e2sgate/compartments/sandbox/netns"
)

// Attacher is a sandbox.NetAttacher.
type Attacher struct {
	host   *netns.Host
	onDeny func(bpfguard.Event)
	log    *slog.Logger
	// Policy chooses a compartment's bpfguard policy; default
	// bpfguard.PolicyFor(s.Name, s.Network).
	Policy func(s sandbox.Spec) bpfguard.Policy

	mu     sync.Mutex
	active map[string]attached // by namespace path
}

type attached struct {
	ns    *netns.Namespace
	guard io.Closer
}

var _ sandbox.NetAttacher = (*Attacher)(nil)

// New returns an Attacher that builds namespaces' contents with host and
// calls onDeny (may be nil) for every denial of the cgroup programs.
func New(host *netns.Host, onDeny func(bpfguard.Event), log *slog.Logger) *Attacher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Attacher{host: host, onDeny: onDeny, log: log, active: map[string]attached{}}
}

// Layers names what Attach enforces, for the compartment's status.
func (a *Attacher) Layers() []string { return []string{"nftables", "cgroup-bpf"} }

// Attach attaches the cgroup programs to a.CgroupV2 first (so nothing that
// enters the cgroup is unguarded), then configures the namespace at
// a.NetnsPath. On error nothing it attached is left.
func (a *Attacher) Attach(ctx context.Context, at sandbox.NetAttachment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	policy := bpfguard.PolicyFor(at.Spec.Name, at.Spec.Network)
	if a.Policy != nil {
		policy = a.Policy(at.Spec)
	}
	g, err := bpfguard.Attach(at.CgroupV2, policy, a.onDeny)
	if err != nil {
		return fmt.Errorf("attach %s: %w", at.Spec.Name, err)
	}
	ns, err := a.host.Configure(at.Spec.Name, at.NetnsPath, at.Spec.Network)
	if err != nil {
		return errors.Join(fmt.Errorf("attach %s: %w", at.Spec.Name, err), g.Close())
	}
	a.mu.Lock()
	old, had := a.active[at.NetnsPath]
	a.active[at.NetnsPath] = attached{ns: ns, guard: g}
	a.mu.Unlock()
	if had {
		// Attach without Detach: release the older state rather than leak it.
		errors.Join(old.ns.Close(), old.guard.Close())
	}
	a.log.Info("network attached", "compartment", at.Spec.Name, "mode", string(at.Spec.Network.Mode),
		"allow", len(at.Spec.Network.Allow), "inet", len(policy.Families) > 0, "cgroup", at.CgroupV2)
	return nil
}

// Detach removes what Attach made for the namespace at a.NetnsPath: the
// veth, then the cgroup programs. It succeeds when nothing is attached.
// What a crashed supervisor left is not known here: its programs go with
// the cgroup directory the runtime removes, its veth with the namespace.
func (a *Attacher) Detach(at sandbox.NetAttachment) error {
	a.mu.Lock()
	st, ok := a.active[at.NetnsPath]
	delete(a.active, at.NetnsPath)
	a.mu.Unlock()
	if !ok {
		return nil
	}
	if err := errors.Join(st.ns.Close(), st.guard.Close()); err != nil {
		return fmt.Errorf("detach %s: %w", at.Spec.Name, err)
	}
	a.log.Info("network detached", "compartment", at.Spec.Name)
	return nil
}
