// Package netnstest runs network probes in a child process placed in a
// network namespace and a cgroup, the way an attacker inside a compartment
// would try them. The child is the test binary itself, re-run (as
// net/http/cgi's tests do): a test package calls Main from TestMain and Run
// from its tests.
//
// The child enters the namespace before it runs any Go code that could use
// the network: it joins the namespace on one locked thread and re-executes
// itself from that thread, so every thread of the probing process is in the
// namespace, and DNS lookups (which the Go resolver runs on other threads)
// cannot leak into the test runner's namespace.
package netnstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	envEnter  = "E2S_NETNSTEST_ENTER"  // namespace path to join, then re-exec
	envProbes = "E2S_NETNSTEST_PROBES" // JSON []Probe; presence marks a child
)

// Kind is what a probe tries.
type Kind string

const (
	TCP     Kind = "tcp"     // connect(2) a TCP socket to Addr
	UDP     Kind = "udp"     // connect(2) a UDP socket to Addr and send one datagram
	TCP6    Kind = "tcp6"    // connect(2) an AF_INET6 TCP socket to Addr (v4-mapped for IPv4)
	SendTo  Kind = "sendto"  // sendto(2) on an unconnected UDP socket
	DNS     Kind = "dns"     // look Addr (a host name) up with the Go resolver
	Raw     Kind = "raw"     // socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
	Raw6    Kind = "raw6"    // socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6)
	Packet  Kind = "packet"  // socket(AF_PACKET, SOCK_RAW, ETH_P_ALL)
	Inet    Kind = "inet"    // socket(AF_INET, SOCK_STREAM, 0)
	Unix    Kind = "unix"    // socket(AF_UNIX, SOCK_STREAM, 0)
	Netlink Kind = "netlink" // socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)
	Accept  Kind = "accept"  // accept one connection on fd 3 and answer "ok"
	// Beyond the network, for the BPF LSM layer:
	Signal Kind = "signal" // kill(Addr, 0), Addr a pid
	Open   Kind = "open"   // open(Addr) read-only
)

// Probe is one attempt.
type Probe struct {
	Kind    Kind
	Addr    string        `json:",omitempty"` // host:port, or a name for DNS
	Timeout time.Duration `json:",omitempty"` // default 1s
	Count   int           `json:",omitempty"` // repeat; the result is the last attempt's
}

// Result is what a probe got.
type Result struct {
	Probe Probe
	Err   string `json:",omitempty"` // empty: the attempt succeeded
	Errno string `json:",omitempty"` // e.g. "EPERM", when the error carried one
	// Elapsed is the time all Count attempts took, in the child.
	Elapsed time.Duration
}

// OK reports whether the attempt succeeded.
func (r Result) OK() bool { return r.Err == "" }

// Report is the child's answer.
type Report struct {
	Pid     int
	Results []Result
}

// Env returns the environment entry that makes a program calling Main run
// probes and print its Report: how a probe program started by another
// runtime (a runc sandbox) gets its orders.
func Env(probes ...Probe) (string, error) {
	raw, err := json.Marshal(probes)
	if err != nil {
		return "", err
	}
	return envProbes + "=" + string(raw), nil
}

// Main must be called first thing in TestMain. In the test runner it
// returns; in a probe child it runs the probes, prints the Report as JSON
// and exits.
func Main() {
	if path := os.Getenv(envEnter); path != "" {
		enter(path) // does not return
	}
	raw, ok := os.LookupEnv(envProbes)
	if !ok {
		return
	}
	var probes []Probe
	if err := json.Unmarshal([]byte(raw), &probes); err != nil {
		fmt.Fprintln(os.Stderr, "netnstest child:", err)
		os.Exit(2)
	}
	rep := Report{Pid: os.Getpid()}
	for _, p := range probes {
		rep.Results = append(rep.Results, run(p))
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		os.Exit(2)
	}
	os.Exit(0)
}

// enter joins the namespace at path on a locked thread and re-executes the
// program from it, so the new image starts with all threads inside.
func enter(path string) {
	runtime.LockOSThread()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "netnstest child: enter", path+":", err)
		os.Exit(2)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fail(err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		fail(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envEnter+"=") {
			env = append(env, kv)
		}
	}
	fail(unix.Exec("/proc/self/exe", os.Args, env))
}

func run(p Probe) Result {
	if p.Timeout == 0 {
		p.Timeout = time.Second
	}
	start := time.Now()
	err := attempt(p)
	for i := 1; i < p.Count; i++ {
		err = attempt(p)
	}
	r := Result{Probe: p, Elapsed: time.Since(start)}
	if err != nil {
		r.Err = err.Error()
		var errno syscall.Errno
		if errors.As(err, &errno) {
			r.Errno = unix.ErrnoName(errno)
		}
	}
	return r
}

func attempt(p Probe) error {
	socket := func(family, typ, proto int) error {
		fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		return unix.Close(fd)
	}
	switch p.Kind {
	case TCP, UDP:
		c, err := net.DialTimeout(string(p.Kind), p.Addr, p.Timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		if p.Kind == UDP {
			_, err = c.Write([]byte("probe"))
		}
		return err
	case TCP6:
		ap, err := netip.ParseAddrPort(p.Addr)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		defer unix.Close(fd)
		tv := unix.NsecToTimeval(p.Timeout.Nanoseconds())
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
		sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: netip.AddrFrom16(ap.Addr().As16()).As16()}
		return os.NewSyscallError("connect", unix.Connect(fd, sa))
	case SendTo:
		c, err := net.ListenPacket("udp", ":0")
		if err != nil {
			return err
		}
		defer c.Close()
		dst, err := net.ResolveUDPAddr("udp", p.Addr)
		if err != nil {
			return err
		}
		_, err = c.WriteTo([]byte("probe"), dst)
		return err
	case DNS:
		ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
		defer cancel()
		r := &net.Resolver{PreferGo: true}
		_, err := r.LookupHost(ctx, p.Addr)
		return err
	case Raw:
		return socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	case Raw6:
		return socket(unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6)
	case Packet:
		return socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	case Inet:
		return socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	case Unix:
		return socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	case Netlink:
		return socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
	case Signal:
		pid, err := strconv.Atoi(p.Addr)
		if err != nil {
			return err
		}
		return os.NewSyscallError("kill", unix.Kill(pid, 0))
	case Open:
		f, err := os.Open(p.Addr)
		if err != nil {
			return err
		}
		return f.Close()
	case Accept:
		l, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			return err
		}
		defer l.Close()
		l.(*net.TCPListener).SetDeadline(time.Now().Add(p.Timeout))
		c, err := l.Accept()
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("ok"))
		return err
	}
	return fmt.Errorf("unknown probe kind %q", p.Kind)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Options place the child.
type Options struct {
	Netns  string     // namespace path to join; "" stays in the runner's
	Cgroup string     // cgroup v2 directory to start in; "" stays in the runner's
	Files  []*os.File // become fd 3, 4, ... in the child
}

// Run starts the test binary as a probe child placed as o says, waits for
// it and returns its report. It fails t if the child cannot run at all.
func Run(t testing.TB, o Options, probes ...Probe) Report {
	t.Helper()
	raw, err := json.Marshal(probes)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), envProbes+"="+string(raw))
	if o.Netns != "" {
		cmd.Env = append(cmd.Env, envEnter+"="+o.Netns)
	}
	cmd.ExtraFiles = o.Files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if o.Cgroup != "" {
		dir, err := os.Open(o.Cgroup)
		if err != nil {
			t.Fatal(err)
		}
		defer dir.Close()
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(dir.Fd())
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("probe child: %v\nstderr: %s", err, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("probe child output %q: %v\nstderr: %s", stdout.String(), err, stderr.String())
	}
	return rep
}
