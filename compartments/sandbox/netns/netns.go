// Package netns builds a compartment's network namespace: a persistent,
// named namespace (a bind mount under /run/netns, as `ip netns add` makes
// it) that runc joins by path, holding only what the compartment's
// sandbox.Network grants:
//
//	NetNone      nothing: the loopback stays down
//	NetLoopback  loopback only
//	NetVeth      loopback and eth0, a veth whose other end is on a bridge in
//	             the separate internal-network namespace, where the internal
//	             endpoints live
//
// Every namespace gets a default-drop nftables ruleset (table inet "e2s")
// that lets out only established/related traffic, its own loopback and the
// endpoints of sandbox.Network.Allow. The root namespace's firewall and
// routes are never touched.
package netns

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/e2sgate/e2sgate/compartments/sandbox"
)

// Config says where namespaces live and how they are named. The zero value
// is the production layout.
type Config struct {
	// Dir holds the namespaces' bind mounts; default "/run/netns", where
	// `ip netns` and runc look.
	Dir string
	// Prefix starts every namespace name; default "e2s-". A compartment's
	// namespace is Prefix+name, the internal network's Prefix+"internal-net".
	Prefix string
	// Bridge is the internal network's bridge inside the internal
	// namespace; default "e2sint0".
	Bridge string
	// Logger receives one record per namespace set up or removed; default
	// discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Dir == "" {
		c.Dir = "/run/netns"
	}
	if c.Prefix == "" {
		c.Prefix = "e2s-"
	}
	if c.Bridge == "" {
		c.Bridge = "e2sint0"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Host sets up and removes the network namespaces of one supervisor's
// compartments and the internal network they attach to.
type Host struct {
	cfg      Config
	mu       sync.Mutex
	internal *Namespace
	closed   bool
}

// New returns a Host; it creates nothing until Setup or Internal is called.
func New(c Config) *Host { return &Host{cfg: c.withDefaults()} }

// Namespace is one named network namespace.
type Namespace struct {
	name     string
	path     string
	hostLink string // the veth's end in the internal namespace, if any
	owned    bool   // the bind mount is ours to remove
	host     *Host
	log      *slog.Logger
	once     sync.Once
	err      error
}

// Name is the namespace's name (as `ip netns list` shows it).
func (ns *Namespace) Name() string { return ns.name }

// Path is the namespace's bind mount, for the OCI spec's network namespace
// path (runc joins it with setns).
func (ns *Namespace) Path() string { return ns.path }

// Do runs f on a thread inside the namespace. Sockets f opens stay in the
// namespace; no other goroutine ever runs there.
func (ns *Namespace) Do(f func() error) error { return do(ns.path, f) }

// Close removes what Setup or Configure made: the veth (both ends) first,
// then, for a namespace Setup created, the bind mount. A process still
// inside keeps the namespace alive, without its veth, until it exits.
func (ns *Namespace) Close() error {
	ns.once.Do(func() {
		var errs []error
		if ns.hostLink != "" {
			if err := ns.host.deleteHostLink(ns.hostLink); err != nil {
				errs = append(errs, err)
			}
		}
		if ns.owned {
			if err := removeNamed(ns.path); err != nil {
				errs = append(errs, err)
			}
		}
		ns.err = errors.Join(errs...)
		if ns.err != nil {
			ns.err = fmt.Errorf("remove netns %s: %w", ns.name, ns.err)
		}
		ns.log.Info("netns removed", "netns", ns.name, "err", ns.err)
	})
	return ns.err
}

// Setup creates the network namespace of compartment name as n says and
// installs its nftables ruleset. A namespace of the same name left over
// from an earlier run is removed first. On error nothing is left behind.
func (h *Host) Setup(name string, n sandbox.Network) (*Namespace, error) {
	if err := validate(name, n); err != nil {
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("netns %s: %w", name, ErrClosed)
	}
	ns, err := h.create(h.cfg.Prefix + name)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	return h.setup(ns, name, n)
}

// Configure does what Setup does in a namespace that already exists at
// path (made by the runtime, e.g. sandbox's runc runtime): brings lo up
// unless n.Mode is NetNone, adds the veth for NetVeth and installs the
// ruleset. Close then removes the veth but leaves the namespace to its
// creator. On error nothing Configure added is left behind.
func (h *Host) Configure(name, path string, n sandbox.Network) (*Namespace, error) {
	if err := validate(name, n); err != nil {
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("netns %s: %w", name, ErrClosed)
	}
	ns := &Namespace{name: filepath.Base(path), path: path, host: h, log: h.cfg.Logger}
	return h.setup(ns, name, n)
}

func (h *Host) setup(ns *Namespace, name string, n sandbox.Network) (*Namespace, error) {
	ns.log = ns.log.With("compartment", name)
	if err := h.configure(ns, name, n); err != nil {
		return nil, errors.Join(fmt.Errorf("netns %s: %w", name, err), ns.Close())
	}
	attrs := []any{"netns", ns.name, "mode", string(n.Mode), "allow", len(n.Allow)}
	if n.Address.IsValid() {
		attrs = append(attrs, "address", n.Address.String())
	}
	ns.log.Info("netns ready", attrs...)
	return ns, nil
}

// create makes a fresh namespace, removing a stale one of the same name.
func (h *Host) create(name string) (*Namespace, error) {
	path, err := createNamed(h.cfg.Dir, name)
	if errors.Is(err, ErrExists) {
		h.cfg.Logger.Warn("removing stale netns", "netns", name)
		if err := removeNamed(filepath.Join(h.cfg.Dir, name)); err != nil {
			return nil, err
		}
		path, err = createNamed(h.cfg.Dir, name)
	}
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	return &Namespace{name: name, path: path, owned: true, host: h, log: h.cfg.Logger}, nil
}

func validate(name string, n sandbox.Network) error {
	if name == "" || len(name) > 64 || filepath.Base(name) != name {
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	}
	switch n.Mode {
	case sandbox.NetNone, sandbox.NetLoopback:
	case sandbox.NetVeth:
		if !n.Address.IsValid() || n.Address.Bits() >= n.Address.Addr().BitLen()-1 {
			return fmt.Errorf("veth address %v: %w", n.Address, ErrInvalid)
		}
	default:
		return fmt.Errorf("mode %q: %w", n.Mode, ErrInvalid)
	}
	for _, e := range n.Allow {
		if !e.Prefix.IsValid() {
			return fmt.Errorf("allow %v: %w", e.Prefix, ErrInvalid)
		}
	}
	return nil
}

func (h *Host) configure(ns *Namespace, compartment string, n sandbox.Network) error {
	nh, err := handleAt(ns.path)
	if err != nil {
		return err
	}
	defer nh.Close()
	if n.Mode != sandbox.NetNone {
		if err := linkUp(nh, "lo"); err != nil {
			return err
		}
	}
	if n.Mode == sandbox.NetVeth {
		if err := h.attach(ns, nh, compartment, n.Address); err != nil {
			return err
		}
	}
	fd, err := unix.Open(ns.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := addRuleset(c, n); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables ruleset: %w", err)
	}
	return nil
}

// Internal returns the internal network's namespace, creating it (with its
// bridge up) on first use; an existing one is reused, so what the operator
// attached to it (the internal NIC) survives a supervisor restart.
func (h *Host) Internal() (*Namespace, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.internalLocked()
}

func (h *Host) internalLocked() (*Namespace, error) {
	if h.closed {
		return nil, ErrClosed
	}
	if h.internal != nil {
		return h.internal, nil
	}
	name := h.cfg.Prefix + "internal-net"
	path, err := createNamed(h.cfg.Dir, name)
	if errors.Is(err, ErrExists) {
		path, err = filepath.Join(h.cfg.Dir, name), nil
	}
	if err != nil {
		return nil, fmt.Errorf("internal netns: %w", err)
	}
	ns := &Namespace{name: name, path: path, owned: true, host: h, log: h.cfg.Logger}
	if err := h.bridgeUp(ns); err != nil {
		return nil, errors.Join(fmt.Errorf("internal netns: %w", err), removeNamed(path))
	}
	h.internal = ns
	return ns, nil
}

func (h *Host) bridgeUp(ns *Namespace) error {
	nh, err := handleAt(ns.path)
	if err != nil {
		return err
	}
	defer nh.Close()
	if err := linkUp(nh, "lo"); err != nil {
		return err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: h.cfg.Bridge}}
	if err := nh.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add bridge %s: %w", h.cfg.Bridge, err)
	}
	return linkUp(nh, h.cfg.Bridge)
}

// Gateway is the address the internal network's bridge carries on a
// compartment's subnet: the first host address of the prefix, or the second
// when the compartment took the first.
func Gateway(p netip.Prefix) netip.Addr {
	gw := p.Masked().Addr().Next()
	if gw == p.Addr() {
		gw = gw.Next()
	}
	return gw
}

// attach creates the veth: eth0 in the compartment's namespace, the host
// end on the internal network's bridge, and routes the compartment through
// the bridge's address on its subnet.
func (h *Host) attach(ns *Namespace, nh *netlink.Handle, compartment string, addr netip.Prefix) error {
	h.mu.Lock()
	internal, err := h.internalLocked()
	h.mu.Unlock()
	if err != nil {
		return err
	}
	ih, err := handleAt(internal.path)
	if err != nil {
		return err
	}
	defer ih.Close()
	target, err := vnetns.GetFromPath(ns.path)
	if err != nil {
		return fmt.Errorf("open %s: %w", ns.path, err)
	}
	defer target.Close()

	hostName := hostLinkName(compartment)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: hostName},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(target),
	}
	err = ih.LinkAdd(veth)
	if errors.Is(err, unix.EEXIST) {
		// Left by a compartment whose namespace outlived its supervisor.
		h.cfg.Logger.Warn("removing stale veth", "compartment", compartment, "link", hostName)
		if err := h.deleteHostLink(hostName); err != nil {
			return err
		}
		err = ih.LinkAdd(veth)
	}
	if err != nil {
		return fmt.Errorf("add veth %s: %w", hostName, err)
	}
	ns.hostLink = hostName
	br, err := ih.LinkByName(h.cfg.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", h.cfg.Bridge, err)
	}
	hl, err := ih.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("veth %s: %w", hostName, err)
	}
	if err := ih.LinkSetMaster(hl, br); err != nil {
		return fmt.Errorf("enslave %s: %w", hostName, err)
	}
	if err := ih.LinkSetUp(hl); err != nil {
		return fmt.Errorf("up %s: %w", hostName, err)
	}
	gw := Gateway(addr)
	gwAddr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(gw, addr.Bits()))}
	if err := ih.AddrAdd(br, gwAddr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("address %s on %s: %w", gw, h.cfg.Bridge, err)
	}

	eth, err := nh.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0: %w", err)
	}
	nodad := 0
	if addr.Addr().Is6() {
		nodad = unix.IFA_F_NODAD
	}
	if err := nh.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(addr), Flags: nodad}); err != nil {
		return fmt.Errorf("address %s on eth0: %w", addr, err)
	}
	if err := nh.LinkSetUp(eth); err != nil {
		return fmt.Errorf("up eth0: %w", err)
	}
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(gw.AsSlice())}
	if err := nh.RouteAdd(route); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

func (h *Host) deleteHostLink(name string) error {
	h.mu.Lock()
	internal := h.internal
	h.mu.Unlock()
	if internal == nil {
		return nil
	}
	ih, err := handleAt(internal.path)
	if err != nil {
		return err
	}
	defer ih.Close()
	l, err := ih.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("veth %s: %w", name, err)
	}
	if err := ih.LinkDel(l); err != nil {
		return fmt.Errorf("delete veth %s: %w", name, err)
	}
	return nil
}

// Close removes the internal network's namespace (with its bridge and
// whatever still hangs on it). Compartment namespaces are closed by their
// owners, before.
func (h *Host) Close() error {
	h.mu.Lock()
	internal := h.internal
	h.closed = true
	h.mu.Unlock()
	if internal == nil {
		return nil
	}
	return internal.Close()
}

// hostLinkName names a compartment's veth end in the internal namespace.
// Link names have at most 15 bytes; a longer name is cut and made unique
// with a hash of the whole.
func hostLinkName(compartment string) string {
	n := "vh-" + compartment
	if len(n) > unix.IFNAMSIZ-1 {
		h := fnv.New32a()
		h.Write([]byte(compartment))
		n = fmt.Sprintf("vh-%.5s-%06x", compartment, h.Sum32()&0xffffff)
	}
	return n
}

func handleAt(path string) (*netlink.Handle, error) {
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return nh, nil
}

func linkUp(nh *netlink.Handle, name string) error {
	l, err := nh.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if err := nh.LinkSetUp(l); err != nil {
		return fmt.Errorf("up %s: %w", name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// Available reports whether this host can give compartments their network
// layer: it creates a scratch namespace, installs a default-drop ruleset in
// it and removes it again. The supervisor refuses to start when this
// fails, unless the configuration lowers the requirement.
func (h *Host) Available() error {
	ns, err := h.Setup(fmt.Sprintf("probe-%d", os.Getpid()), sandbox.Network{Mode: sandbox.NetNone})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return ns.Close()
}
