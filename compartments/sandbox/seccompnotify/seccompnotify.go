// Package seccompnotify makes a compartment's seccomp denials visible. The
// compartments' profile sends every syscall it denies to a user-space
// listener (SCMP_ACT_NOTIFY) instead of failing it in the kernel; runc
// hands the listener fd of each container and of each `runc exec` to the
// supervisor over a unix socket (linux.seccomp.listenerPath). The Agent
// here receives those fds, answers every notification at once with the
// errno the profile would have returned (EPERM: the call fails exactly as
// before) and reports it as a Denial: compartment, syscall, arguments.
//
// Sequence (one container; runc exec is the same with its own fd):
//
//	runc init                 runc run                  Agent (supervisor)
//	 seccomp(NEW_LISTENER) ──▶ pidfd_getfd
//	                           connect(listenerPath) ──▶ accept, SO_PEERCRED uid 0
//	                           state JSON + fd ────────▶ compartment from the metadata
//	 ... execve, program runs
//	 ptrace(...) blocks ─────────────────────────────────▶ NOTIF_RECV
//	 ◀── EPERM ───────────────────────────────────────── NOTIF_SEND, onDeny(Denial)
//
// Nothing a compartment does can block the supervisor: each fd has its own
// goroutine, onDeny must not block (the caller queues, bounded), and a
// compartment that denies itself in a loop is slowed (its answers wait)
// beyond Rate notifications a second, so it costs the supervisor a bounded
// share of a core.
package seccompnotify

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Errno is what every notified call fails with: the errno of the profile's
// default action.
const Errno = unix.EPERM

// Rate and Burst bound the notifications answered per second per listener
// fd without delay; beyond them the denied thread waits for its answer.
const (
	Rate  = 200
	Burst = 1000
)

// Denial is one syscall a compartment's filter refused.
type Denial struct {
	Compartment string
	Syscall     string // its name, e.g. "ptrace"
	// Detail is the call with its arguments summarised, the task's host
	// pid and its comm: "ptrace(PTRACE_ATTACH, 1, 0, 0) pid=4242 exe=probe".
	Detail string
}

// Names lists the syscalls this arch knows (their names as libseccomp and
// runc spell them), for the profile's notify rule.
func Names() []string {
	out := make([]string, 0, len(syscallNames))
	for _, n := range syscallNames {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Agent receives listener fds from runc and answers their notifications.
type Agent struct {
	path   string
	ln     *net.UnixListener
	onDeny func(Denial)
	log    *slog.Logger

	stopR, stopW *os.File // closing stopW wakes every fd's poll
	wg           sync.WaitGroup
	closeOnce    sync.Once
}

// Listen creates the unix socket at path (mode 0600: only root, which runc
// runs as, may connect) and serves it until Close. onDeny is called for
// every denial from the fd's goroutine and must not block.
func Listen(path string, onDeny func(Denial), log *slog.Logger) (*Agent, error) {
	_ = os.Remove(path) // a previous supervisor's socket
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("seccomp agent: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("seccomp agent: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("seccomp agent: %w", err)
	}
	a := &Agent{path: path, ln: ln, onDeny: onDeny, log: log, stopR: r, stopW: w}
	a.wg.Add(1)
	go a.accept()
	return a, nil
}

// Path is the socket runc connects to (the profile's listenerPath).
func (a *Agent) Path() string { return a.path }

// Close stops accepting and ends every fd's goroutine; calls still blocked
// in a notification then fail with ENOSYS (the kernel's answer when no
// listener is left), which happens only while the compartments are being
// stopped too.
func (a *Agent) Close() error {
	var err error
	a.closeOnce.Do(func() {
		err = a.ln.Close()
		a.stopW.Close()
		a.wg.Wait()
		a.stopR.Close()
		os.Remove(a.path)
	})
	return err
}

func (a *Agent) accept() {
	defer a.wg.Done()
	for {
		c, err := a.ln.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				a.log.Error("seccomp agent: accept failed; seccomp denials of containers started from now on are not reported", "error", err)
			}
			return
		}
		fd, name, err := receive(c)
		c.Close()
		if err != nil {
			a.log.Error("seccomp agent: refused a listener fd", "error", err)
			continue
		}
		a.log.Debug("seccomp agent: listening", "compartment", name)
		a.wg.Add(1)
		go a.serve(fd, name)
	}
}

// receive reads runc's message: the container process state as JSON with
// the listener fd attached. Only root (runc) may hand one over.
func receive(c *net.UnixConn) (int, string, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, "", err
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if credErr != nil {
		return -1, "", fmt.Errorf("peer credentials: %w", credErr)
	}
	if cred.Uid != 0 {
		return -1, "", fmt.Errorf("peer uid %d is not runc (root)", cred.Uid)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var data []byte
	fds := []int{}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for len(data) < 1<<20 {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				if perr == nil {
					if got, err := unix.ParseUnixRights(&m); err == nil {
						fds = append(fds, got...)
					}
				}
			}
		}
		if err != nil || n <= 0 {
			break
		}
		data = append(data, buf[:n]...)
		if json.Valid(data) {
			break // runc sent all and closes
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, "", fmt.Errorf("got %d fds, want the one listener fd", len(fds))
	}
	var st specs.ContainerProcessState
	if err := json.Unmarshal(data, &st); err != nil {
		unix.Close(fds[0])
		return -1, "", fmt.Errorf("container state: %w", err)
	}
	// The metadata is the compartment's name, set in its OCI spec by the
	// supervisor; the annotation is the same name, for older specs.
	name := st.Metadata
	if name == "" {
		name = st.State.Annotations["org.e2sgate.compartment"]
	}
	if name == "" {
		name = st.State.ID
	}
	return fds[0], name, nil
}

// Kernel structures (linux/seccomp.h).
type seccompData struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

type notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// serve answers the notifications of one listener fd until no task uses
// its filter any more (the container and its execs are gone) or Close.
func (a *Agent) serve(fd int, name string) {
	defer a.wg.Done()
	defer unix.Close(fd)
	tokens, last := float64(Burst), time.Now()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(a.stopR.Fd()), Events: unix.POLLIN}}
	for {
		pfd[0].Revents, pfd[1].Revents = 0, 0
		if _, err := unix.Poll(pfd, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			a.log.Error("seccomp agent: poll", "compartment", name, "error", err)
			return
		}
		if pfd[1].Revents != 0 {
			return
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			return // POLLHUP: no task left under this filter
		}
		var n notif
		if err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n)); err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT) {
				continue // the task was gone before we took it
			}
			a.log.Error("seccomp agent: receive", "compartment", name, "error", err)
			return
		}
		// A flood waits here, in the compartment's own time.
		now := time.Now()
		tokens = min(Burst, tokens+now.Sub(last).Seconds()*Rate)
		last = now
		if tokens < 1 {
			time.Sleep(time.Duration((1 - tokens) / Rate * float64(time.Second)))
			tokens = 1
		}
		tokens--
		// Read while the task still waits for its answer.
		d := Denial{Compartment: name, Syscall: SyscallName(n.Data.Nr),
			Detail: Summary(n.Data.Nr, n.Data.Args) + " pid=" + strconv.Itoa(int(n.Pid)) + " exe=" + comm(n.Pid)}
		resp := notifResp{ID: n.ID, Error: -int32(Errno)}
		if err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp)); errors.Is(err, unix.ENOENT) {
			// A signal interrupted the task while it waited (Go preempts
			// with SIGURG): the call restarts and comes back as a new
			// notification, counted then, so one denied call is one
			// denial. Or the task died before its answer, and the call
			// never returned: not counted.
			continue
		} else if err != nil {
			a.log.Error("seccomp agent: answer", "compartment", name, "error", err)
		}
		a.onDeny(d)
	}
}

func ioctl(fd int, req uint, arg unsafe.Pointer) error {
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg)); e != 0 {
		return e
	}
	return nil
}

// comm is the task's command name ("?" once it is gone).
func comm(pid uint32) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
