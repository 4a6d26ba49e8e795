// Package bpfguard confines a compartment's sockets in the kernel with
// cgroup BPF programs attached to its cgroup v2 directory, a second layer
// under the network namespace's nftables ruleset:
//
//	cgroup/connect4, connect6   connect(2) only to Policy.Allow
//	cgroup/sendmsg4, sendmsg6   sendto(2) of datagrams only to Policy.Allow
//	cgroup/sock_create          AF_INET/AF_INET6 sockets only if
//	                            Policy.Families lists the family, and never
//	                            SOCK_RAW unless Policy.Raw
//
// A denied call fails with EPERM and is reported as an Event through a BPF
// ring buffer. The kernel runs cgroup sock_create programs only for
// AF_INET and AF_INET6 sockets: packet, netlink and other families are out
// of this layer's reach and must be refused by capabilities and seccomp.
//
// The programs are attached with BPF_PROG_ATTACH (BPF_F_ALLOW_MULTI), not
// as BPF links, so they stay in force if the supervisor dies: the cgroup
// fails closed until it is removed or Close detaches them.
package bpfguard

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/e2sgate/e2sgate/compartments/sandbox"
)

// Kind says which hook denied.
type Kind string

const (
	KindConnect4   Kind = "connect4"
	KindConnect6   Kind = "connect6"
	KindSendmsg4   Kind = "sendmsg4"
	KindSendmsg6   Kind = "sendmsg6"
	KindSockCreate Kind = "sock_create"
	// KindLost is not a denial: Lost denials were not reported because the
	// ring buffer was full.
	KindLost Kind = "lost"
)

// kinds is indexed by enum kind of guard.c.
var kinds = [...]Kind{1: KindConnect4, 2: KindConnect6, 3: KindSendmsg4, 4: KindSendmsg6, 5: KindSockCreate}

// Event is one denial.
type Event struct {
	Compartment string // Policy.Compartment
	Cgroup      string // the cgroup directory the programs are attached to
	CgroupID    uint64 // the caller's cgroup (Cgroup or one below it)
	Kind        Kind
	Family      int        // AF_INET or AF_INET6
	Type        int        // SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, ...
	Protocol    int        // IPPROTO_*
	Addr        netip.Addr // destination; invalid for sock_create
	Port        uint16     // destination port; 0 for sock_create
	Pid         int        // thread group id in the host's pid namespace
	UID         int        // in the host's user namespace
	Comm        string
	Lost        uint64 // KindLost only
	// BPF LSM kinds only: the target's pid (ptrace, kill) or inode
	// (file_open), and the compartment whose label it carries.
	Target uint64
	Object string
}

// String renders the event for logs.
func (e Event) String() string {
	if e.Kind == KindLost {
		return fmt.Sprintf("%s: %d denials not reported", e.Compartment, e.Lost)
	}
	if e.Object != "" || e.Target != 0 {
		return fmt.Sprintf("%s: %s target=%d of %s pid=%d comm=%s", e.Compartment, e.Kind, e.Target, e.Object, e.Pid, e.Comm)
	}
	if e.Kind == KindSockCreate {
		return fmt.Sprintf("%s: %s family=%d type=%d protocol=%d pid=%d comm=%s", e.Compartment, e.Kind, e.Family, e.Type, e.Protocol, e.Pid, e.Comm)
	}
	return fmt.Sprintf("%s: %s %s pid=%d comm=%s", e.Compartment, e.Kind, netip.AddrPortFrom(e.Addr, e.Port), e.Pid, e.Comm)
}

// Reason is the audit reason id of the event: "kernel.connect_denied",
// "kernel.socket_denied", "kernel.access_denied" (BPF LSM) or
// "kernel.events_lost".
func (e Event) Reason() string {
	switch e.Kind {
	case KindConnect4, KindConnect6, KindSendmsg4, KindSendmsg6:
		return "kernel.connect_denied"
	case KindSockCreate:
		return "kernel.socket_denied"
	case KindLost:
		return "kernel.events_lost"
	}
	return "kernel.access_denied"
}

// Policy is what one compartment's sockets may do.
type Policy struct {
	Compartment string // name, carried in every Event
	// Allow lists the destinations of connect and sendto; Port 0 means any
	// port. IPv4 prefixes also match IPv4-mapped IPv6 destinations.
	Allow []sandbox.Endpoint
	// Loopback adds 127.0.0.0/8 and ::1 on any port to Allow.
	Loopback bool
	// Families lists the socket families the compartment may create
	// (unix.AF_INET, unix.AF_INET6); none means it can open no IP socket at
	// all and lives on unix sockets and the sockets it is handed.
	Families []int
	// Raw allows SOCK_RAW sockets in the allowed families.
	Raw bool
}

// PolicyFor is the policy that repeats a compartment's network in the
// kernel, as its nftables ruleset does: a compartment with no network
// (NetNone: outside, serving only on the socket it is handed) may create no
// IP socket at all; one with loopback may create IP sockets and connect to
// 127.0.0.0/8 and ::1 (its own loopback: the namespace makes it so) and to
// its allowlist. Raw sockets are never allowed. A supervisor that knows a
// compartment talks only over unix sockets can clear Families to make it
// stricter.
func PolicyFor(compartment string, n sandbox.Network) Policy {
	p := Policy{Compartment: compartment, Allow: n.Allow}
	if n.Mode != sandbox.NetNone || len(n.Allow) > 0 {
		p.Families = []int{unix.AF_INET, unix.AF_INET6}
		p.Loopback = n.Mode != sandbox.NetNone
	}
	return p
}

// maxAllow is the allow map's size in guard.c.
const maxAllow = 1024

// allowKeys turns the allowlist into LPM trie keys.
func allowKeys(p Policy) ([]guardAllowKey, error) {
	allow := p.Allow
	if p.Loopback {
		allow = append(allow[:len(allow):len(allow)],
			sandbox.Endpoint{Prefix: netip.MustParsePrefix("127.0.0.0/8")},
			sandbox.Endpoint{Prefix: netip.MustParsePrefix("::1/128")})
	}
	if len(allow) > maxAllow {
		return nil, fmt.Errorf("%d allowlist entries, at most %d: %w", len(allow), maxAllow, ErrInvalid)
	}
	keys := make([]guardAllowKey, 0, len(allow))
	for _, e := range allow {
		if !e.Prefix.IsValid() {
			return nil, fmt.Errorf("endpoint %v: %w", e.Prefix, ErrInvalid)
		}
		pfx := e.Prefix.Masked()
		bits := pfx.Bits()
		if pfx.Addr().Is4() {
			bits += 96
		}
		var k guardAllowKey
		k.Prefixlen = uint32(16 + bits)
		binary.BigEndian.PutUint16(k.Data[:2], e.Port)
		a16 := pfx.Addr().As16()
		copy(k.Data[2:], a16[:])
		keys = append(keys, k)
	}
	return keys, nil
}

// Guard is a compartment's attached programs and its event reader.
type Guard struct {
	policy Policy
	dir    string
	cgroup *os.File
	objs   guardObjects
	// attached are the programs attached so far, for detaching.
	attached []link.RawAttachProgramOptions
	reader   *ringbuf.Reader
	onDeny   func(Event)
	done     chan struct{}
	readErr  error
	once     sync.Once
	closeErr error
	lostSeen uint64
}

// Attach loads the programs for p and attaches them to the cgroup v2
// directory cgroupDir, which must exist; attach before the compartment's
// process enters the cgroup (or before it is let run) so that no window is
// unguarded. onDeny (may be nil) is called, one event at a time from one
// goroutine, for every denial until Close; it should not block for long,
// or denials are lost (and counted as a KindLost event).
func Attach(cgroupDir string, p Policy, onDeny func(Event)) (*Guard, error) {
	keys, err := allowKeys(p)
	if err != nil {
		return nil, fmt.Errorf("bpfguard %s: %w", p.Compartment, err)
	}
	for _, f := range p.Families {
		if f <= 0 || f >= 64 {
			return nil, fmt.Errorf("bpfguard %s: family %d: %w", p.Compartment, f, ErrInvalid)
		}
	}
	g, err := attach(cgroupDir, p, keys, onDeny)
	if err != nil {
		return nil, fmt.Errorf("bpfguard %s on %s: %w", p.Compartment, cgroupDir, err)
	}
	return g, nil
}

func attach(dir string, p Policy, keys []guardAllowKey, onDeny func(Event)) (_ *Guard, err error) {
	spec, err := loadGuard()
	if err != nil {
		return nil, err
	}
	raw := uint8(0)
	if p.Raw {
		raw = 1
	}
	if err := spec.Variables[guardVarAllowRaw].Set(raw); err != nil {
		return nil, fmt.Errorf("set allow_raw: %w", err)
	}
	g := &Guard{policy: p, dir: dir, onDeny: onDeny, done: make(chan struct{})}
	if err := spec.LoadAndAssign(&g.objs, nil); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, g.release())
		}
	}()
	for _, k := range keys {
		if err := g.objs.Allow.Put(k, uint8(1)); err != nil {
			return nil, fmt.Errorf("allowlist: %w", err)
		}
	}
	for _, f := range p.Families {
		if err := g.objs.Families.Put(uint32(f), uint8(1)); err != nil {
			return nil, fmt.Errorf("families: %w", err)
		}
	}
	if g.reader, err = ringbuf.NewReader(g.objs.Events); err != nil {
		return nil, fmt.Errorf("ring buffer: %w", err)
	}
	// Running from here on, so that release can always stop it.
	go g.read()
	if g.cgroup, err = os.Open(dir); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{
		// sock_create first: from then on no new IP socket escapes the
		// connect checks that follow.
		{g.objs.SockCreate, ebpf.AttachCGroupInetSockCreate},
		{g.objs.Connect4, ebpf.AttachCGroupInet4Connect},
		{g.objs.Connect6, ebpf.AttachCGroupInet6Connect},
		{g.objs.Sendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{g.objs.Sendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
	} {
		o := link.RawAttachProgramOptions{Target: int(g.cgroup.Fd()), Program: a.prog, Attach: a.typ, Flags: unix.BPF_F_ALLOW_MULTI}
		if err := link.RawAttachProgram(o); err != nil {
			return nil, fmt.Errorf("attach %s: %w", a.typ, err)
		}
		g.attached = append(g.attached, o)
	}
	return g, nil
}

func (g *Guard) read() {
	defer close(g.done)
	var rec ringbuf.Record
	for {
		if err := g.reader.ReadInto(&rec); err != nil {
			// Flush (from Close) ends the loop once the buffer is drained.
			if !errors.Is(err, ringbuf.ErrFlushed) && !errors.Is(err, os.ErrClosed) {
				g.readErr = fmt.Errorf("read events: %w", err)
			}
			return
		}
		var ev guardEvent
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &ev); err != nil {
			g.readErr = fmt.Errorf("decode event: %w", err)
			return
		}
		if g.onDeny == nil {
			continue
		}
		g.onDeny(g.event(ev))
		if n := g.Lost(); n > g.lostSeen {
			g.onDeny(Event{Compartment: g.policy.Compartment, Cgroup: g.dir, Kind: KindLost, Lost: n - g.lostSeen})
			g.lostSeen = n
		}
	}
}

func (g *Guard) event(ev guardEvent) Event {
	e := Event{
		Compartment: g.policy.Compartment,
		Cgroup:      g.dir,
		CgroupID:    ev.CgroupId,
		Family:      int(ev.Family),
		Type:        int(ev.Type),
		Protocol:    int(ev.Protocol),
		Port:        ev.Port,
		Pid:         int(ev.Pid),
		UID:         int(ev.Uid),
		Comm:        unix.ByteSliceToString(ev.Comm[:]),
	}
	if int(ev.Kind) < len(kinds) {
		e.Kind = kinds[ev.Kind]
	}
	if e.Kind != KindSockCreate {
		e.Addr = netip.AddrFrom16(ev.Addr)
		if e.Family == unix.AF_INET {
			e.Addr = e.Addr.Unmap()
		}
	}
	return e
}

// Lost is how many denials were not reported because the ring buffer was
// full.
func (g *Guard) Lost() uint64 {
	var n uint64
	if err := g.objs.Lost.Lookup(uint32(0), &n); err != nil {
		return 0
	}
	return n
}

// Close detaches the programs and stops the event reader. Denials that
// happened before Close have been delivered when it returns.
func (g *Guard) Close() error {
	g.once.Do(func() {
		g.closeErr = g.release()
		if g.closeErr != nil {
			g.closeErr = fmt.Errorf("bpfguard %s: %w", g.policy.Compartment, g.closeErr)
		}
	})
	return g.closeErr
}

func (g *Guard) release() error {
	var errs []error
	for _, o := range g.attached {
		// ENOENT: the cgroup is already gone, and the programs with it.
		if err := link.RawDetachProgram(link.RawDetachProgramOptions(o)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("detach %s: %w", o.Attach, err))
		}
	}
	g.attached = nil
	if g.reader != nil {
		// Drain what is already in the buffer, then stop the reader.
		if err := g.reader.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("flush events: %w", err))
			g.reader.Close()
		}
		<-g.done
		g.reader.Close()
		errs = append(errs, g.readErr)
	}
	if g.cgroup != nil {
		g.cgroup.Close()
	}
	errs = append(errs, g.objs.Close())
	return errors.Join(errs...)
}

// Cgroup2Root returns the mount point of the cgroup v2 hierarchy:
// /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one.
func Cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		fields := strings.Fields(s.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4], nil
			}
		}
	}
	if err := s.Err(); err != nil {
		return "", err
	}
	return "", ErrNoCgroup2
}

// Available reports whether the guard's programs load and attach here: it
// attaches them to a scratch cgroup and removes it again. The supervisor
// refuses to start (fails closed) when this returns an error, unless the
// configuration lowers the requirement.
func Available() error {
	root, err := Cgroup2Root()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	dir, err := os.MkdirTemp(root, "e2s-bpfguard-probe-")
	if err != nil {
		return fmt.Errorf("%w: scratch cgroup: %w", ErrUnavailable, err)
	}
	defer os.Remove(dir)
	g, err := Attach(dir, Policy{Compartment: "probe"}, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return g.Close()
}

// LSMAvailable reports whether the kernel loads and attaches BPF LSM
// programs (an optional layer; never required).
func LSMAvailable() error {
	var objs lsmprobeObjects
	if err := loadLsmprobeObjects(&objs, nil); err != nil {
		return fmt.Errorf("%w: load lsm/file_open: %w", ErrLSMUnavailable, err)
	}
	defer objs.Close()
	l, err := link.AttachLSM(link.LSMOptions{Program: objs.LsmProbe})
	if err != nil {
		return fmt.Errorf("%w: attach lsm/file_open: %w", ErrLSMUnavailable, err)
	}
	return l.Close()
}
