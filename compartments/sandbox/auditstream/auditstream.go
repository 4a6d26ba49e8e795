// Package auditstream reads the kernel's audit records of Landlock
// denials (Landlock ABI >= 7: AUDIT_LANDLOCK_ACCESS, AUDIT_LANDLOCK_DOMAIN)
// from NETLINK_AUDIT's read-only multicast group (AUDIT_NLGRP_READLOG), the
// way journald does: it takes nothing from an audit daemon, which keeps
// its own unicast stream. The supervisor is the only reader here.
//
// The kernel reports Landlock denials only while audit is enabled. When it
// is off, Open enables it (AUDIT_SET, no rules added: only records the
// kernel emits by itself, such as Landlock's and other LSMs' denials) and
// Close turns it off again; when it is locked (enabled=2) Open leaves it.
//
// One denial is several records with one serial: LANDLOCK_ACCESS (the
// domain, the access that was blocked, the path or port), LANDLOCK_DOMAIN
// at a domain's first denial (the pid and uid that created it), and, for
// a task forked while audit was on, SYSCALL (its pid, uid, comm) and EOE.
// A denial is mapped to its compartment by the task's cgroup (under the
// instance's cgroup parent) and, once the task is gone, by its uid (each
// compartment has its own).
package auditstream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Record types and requests (linux/audit.h).
const (
	auditGet        = 1000
	auditSet        = 1001
	auditSyscall    = 1300
	auditEOE        = 1320
	auditLLAccess   = 1423
	auditLLDomain   = 1424
	nlgrpReadlog    = 1
	statusEnabled   = 1
	statusStructLen = 40 // enough of struct audit_status for mask and enabled
)

// Denial is one Landlock denial, mapped to its compartment.
type Denial struct {
	Compartment string
	// Access is what Landlock blocked, e.g. "fs.read_file",
	// "net.connect_tcp" (the record's blockers).
	Access string
	// Detail: the access, the object (path= or port) and the task,
	// e.g. `fs.read_file path="/etc/shadow" pid=42 exe=probe`.
	Detail string
}

// Net reports whether the denial was of a network rule.
func (d Denial) Net() bool { return strings.HasPrefix(d.Access, "net.") }

// Mapper names the compartment of a task: by its cgroup while it lives,
// else by its uid. Parent is the instance's cgroup parent (the
// compartments' cgroups are Parent/<name>); UIDs maps each sandbox's uid to
// its name.
type Mapper struct {
	Parent string
	UIDs   map[uint32]string
}

// Stream is an open subscription to the kernel's audit records.
type Stream struct {
	fd       int
	restore  bool // Open enabled audit; Close disables it again
	mapper   Mapper
	log      *slog.Logger
	closeMu  sync.Mutex
	closed   bool
	doneRead chan struct{}

	domains map[string]string // Landlock domain id -> compartment
}

// Open subscribes to the kernel's audit records, enabling audit if it is
// off. It fails when the kernel has no audit or the caller lacks
// CAP_AUDIT_READ / CAP_AUDIT_CONTROL; the caller then reports that
// Landlock denials go unreported.
func Open(m Mapper, log *slog.Logger) (*Stream, error) {
	enabled, err := status()
	if err != nil {
		return nil, fmt.Errorf("kernel audit status: %w", err)
	}
	s := &Stream{fd: -1, mapper: m, log: log, doneRead: make(chan struct{}), domains: map[string]string{}}
	if enabled == 0 {
		if err := setEnabled(1); err != nil {
			return nil, fmt.Errorf("enable kernel audit: %w", err)
		}
		s.restore = true
		log.Info("kernel audit enabled (no rules) so that Landlock denials are reported; it is turned off again at exit")
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (nlgrpReadlog - 1)})
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		if s.restore {
			setEnabled(0)
		}
		return nil, fmt.Errorf("subscribe to kernel audit records: %w", err)
	}
	// A burst of denials must not overflow the socket before the reader
	// wakes (root may exceed rmem_max).
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	s.fd = fd
	return s, nil
}

// Run reads records until Close and calls onDeny for each Landlock denial
// (from this goroutine; it must not block).
func (s *Stream) Run(onDeny func(Denial)) {
	defer close(s.doneRead)
	groups := map[uint64]*group{}
	buf := make([]byte, 1<<16)
	lost := 0
	for {
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		now := time.Now()
		if err != nil {
			switch {
			case s.isClosed():
				return
			case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.ENOBUFS):
				lost++
				s.log.Warn("kernel audit records lost (socket buffer full); Landlock denials were still enforced", "times", lost)
			default:
				s.log.Error("reading kernel audit records failed; Landlock denials go unreported from now on", "error", err)
				return
			}
		}
		for off := 0; err == nil && off+unix.NLMSG_HDRLEN <= n; {
			l := int(binary.NativeEndian.Uint32(buf[off:]))
			typ := binary.NativeEndian.Uint16(buf[off+4:])
			if l < unix.NLMSG_HDRLEN || off+l > n {
				break
			}
			s.add(groups, typ, buf[off+unix.NLMSG_HDRLEN:off+l], now, onDeny)
			off += (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		}
		// Events without an EOE (tasks without an audit context) are
		// complete once no record came for them for a moment.
		for serial, g := range groups {
			if now.Sub(g.seen) > 500*time.Millisecond {
				s.finish(g, onDeny)
				delete(groups, serial)
			}
		}
	}
}

// group is the records of one audit event.
type group struct {
	seen    time.Time
	access  []map[string]string
	domain  map[string]string
	syscall map[string]string
}

func (s *Stream) add(groups map[uint64]*group, typ uint16, text []byte, now time.Time, onDeny func(Denial)) {
	switch typ {
	case auditLLAccess, auditLLDomain, auditSyscall, auditEOE:
	default:
		return
	}
	serial, fields, ok := parse(text)
	if !ok {
		return
	}
	g := groups[serial]
	if g == nil {
		if typ != auditLLAccess && typ != auditLLDomain {
			return // a syscall record of an event that is not Landlock's
		}
		if len(groups) >= 1024 { // bound: drop the oldest-looking
			for k, old := range groups {
				s.finish(old, onDeny)
				delete(groups, k)
				break
			}
		}
		g = &group{}
		groups[serial] = g
	}
	g.seen = now
	switch typ {
	case auditLLAccess:
		g.access = append(g.access, fields)
	case auditLLDomain:
		g.domain = fields
	case auditSyscall:
		g.syscall = fields
	case auditEOE:
		s.finish(g, onDeny)
		delete(groups, serial)
	}
}

// finish maps a complete event to its compartment and reports its denials.
func (s *Stream) finish(g *group, onDeny func(Denial)) {
	if g.domain != nil && g.domain["status"] == "allocated" {
		if name := s.task(g.domain); name != "" {
			s.domains[g.domain["domain"]] = name
		}
	}
	if g.domain != nil && g.domain["status"] == "deallocated" {
		delete(s.domains, g.domain["domain"])
	}
	for _, a := range g.access {
		name := ""
		if g.syscall != nil {
			name = s.task(g.syscall)
		}
		if name == "" {
			name = s.domains[a["domain"]]
		}
		if name == "" {
			continue // not one of this appliance's sandboxes
		}
		d := Denial{Compartment: name, Access: a["blockers"]}
		var b strings.Builder
		b.WriteString(d.Access)
		for _, k := range []string{"path", "name", "daddr", "dest", "saddr", "src", "opid", "ocomm"} {
			if v, ok := a[k]; ok {
				fmt.Fprintf(&b, " %s=%q", k, v)
			}
		}
		task := g.syscall
		if task == nil {
			task = g.domain
		}
		if task != nil {
			fmt.Fprintf(&b, " pid=%s exe=%s", task["pid"], task["comm"])
		}
		d.Detail = b.String()
		onDeny(d)
	}
}

// task names the compartment of the task a record describes.
func (s *Stream) task(f map[string]string) string {
	if pid, err := strconv.Atoi(f["pid"]); err == nil {
		if name := s.mapper.byCgroup(pid); name != "" {
			return name
		}
	}
	if uid, err := strconv.ParseUint(f["uid"], 10, 32); err == nil {
		return s.mapper.UIDs[uint32(uid)]
	}
	return ""
}

// byCgroup: "/<parent>/<name>" in any hierarchy of /proc/pid/cgroup.
func (m Mapper) byCgroup(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil || m.Parent == "" {
		return ""
	}
	prefix := "/" + strings.Trim(m.Parent, "/") + "/"
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && strings.HasPrefix(parts[2], prefix) {
			name, _, _ := strings.Cut(strings.TrimPrefix(parts[2], prefix), "/")
			return name
		}
	}
	return ""
}

// parse splits "audit(1700000000.123:42): k=v k="quoted v" ..." into the
// serial and the fields.
func parse(text []byte) (uint64, map[string]string, bool) {
	t := string(bytes.TrimRight(text, "\x00\n"))
	if !strings.HasPrefix(t, "audit(") {
		return 0, nil, false
	}
	head, rest, ok := strings.Cut(t[len("audit("):], "): ")
	if !ok {
		head, rest, ok = strings.Cut(t[len("audit("):], "):")
	}
	_, ser, ok2 := strings.Cut(head, ":")
	serial, err := strconv.ParseUint(ser, 10, 64)
	if !ok || !ok2 || err != nil {
		return 0, nil, false
	}
	fields := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		k, v, ok := strings.Cut(rest, "=")
		if !ok || strings.ContainsAny(k, " ") {
			break
		}
		if strings.HasPrefix(v, `"`) {
			end := strings.IndexByte(v[1:], '"')
			if end < 0 {
				fields[k], rest = v[1:], ""
				continue
			}
			fields[k], rest = v[1:1+end], v[2+end:]
			continue
		}
		val, r, _ := strings.Cut(v, " ")
		fields[k], rest = val, r
	}
	return serial, fields, true
}

func (s *Stream) isClosed() bool {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	return s.closed
}

// Close ends Run and turns audit off again if Open turned it on.
func (s *Stream) Close() error {
	s.closeMu.Lock()
	s.closed = true
	s.closeMu.Unlock()
	select {
	case <-s.doneRead:
	case <-time.After(2 * time.Second):
	}
	err := unix.Close(s.fd)
	if s.restore {
		err = errors.Join(err, setEnabled(0))
	}
	return err
}

// status asks the kernel whether audit is enabled (0 off, 1 on, 2 locked).
func status() (uint32, error) {
	reply, err := request(auditGet, nil)
	if err != nil {
		return 0, err
	}
	if len(reply) < 8 {
		return 0, errors.New("short audit status")
	}
	return binary.NativeEndian.Uint32(reply[4:]), nil
}

func setEnabled(v uint32) error {
	st := make([]byte, statusStructLen)
	binary.NativeEndian.PutUint32(st[0:], statusEnabled) // mask
	binary.NativeEndian.PutUint32(st[4:], v)
	_, err := request(auditSet, st)
	return err
}

// request sends one audit control message and returns the reply's payload
// (for AUDIT_GET) after the kernel's ack.
func request(typ uint16, payload []byte) ([]byte, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_AUDIT)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	msg := make([]byte, unix.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	copy(msg[unix.NLMSG_HDRLEN:], payload)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var reply []byte
	buf := make([]byte, 8192)
	for range 4 {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		for off := 0; off+unix.NLMSG_HDRLEN <= n; {
			l := int(binary.NativeEndian.Uint32(buf[off:]))
			t := binary.NativeEndian.Uint16(buf[off+4:])
			if l < unix.NLMSG_HDRLEN || off+l > n {
				break
			}
			body := buf[off+unix.NLMSG_HDRLEN : off+l]
			switch t {
			case unix.NLMSG_ERROR:
				if len(body) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(body)); e != 0 {
						return nil, unix.Errno(-e)
					}
				}
				if typ != auditGet || reply != nil {
					return reply, nil
				}
			case typ:
				reply = append([]byte(nil), body...)
				return reply, nil
			}
			off += (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		}
	}
	return reply, errors.New("no answer from kernel audit")
}
