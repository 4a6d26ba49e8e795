package sandbox

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Runc runs each compartment as an OCI container with the runc binary.
//
// Why the binary and not libcontainer linked in: runc's container setup
// re-executes its own binary as the container's init (`runc init`, with a C
// constructor, nsexec, doing the namespace dance before the Go runtime
// starts). Linking libcontainer would make the supervisor that binary: cgo,
// a C constructor running in every supervisor process, and runc's large
// dependency tree inside the one long-lived root process. The binary is
// the release go.mod pins (RuncVersion), built by `make build` into bin/
// beside e2sgated; the boundary to it is a JSON file and a command line,
// and the cost, one fork+exec per start, is measured in the benchmark.
//
// Sequence of Start (the compartment's program runs only at step 6):
//
//	supervisor                 runc run                   program
//	 1 image (images.Build)
//	 2 netns (+lo), Net.Attach  (veth, nftables, cgroup BPF)
//	 3 config.json in bundle
//	 4 ───── exec ──────────────▶ namespaces, cgroups, mounts,
//	                              caps dropped, seccomp
//	 5 ◀──── pid file ─────────── execve ───────────────────▶ 6 landlock.RestrictSelf
//	 7 Wait ◀─── exit status ─── (runc run waits, deletes)
//
// runc on this hybrid cgroup host (cgroup v1 is deprecated since runc 1.4,
// still supported): its cgroupfs driver writes memory, pids and cpu limits
// into the v1 hierarchies (where the controllers are) and adds the
// container to the same path in the controller-less cgroup2 hierarchy at
// /sys/fs/cgroup/unified, which is where the cgroup BPF hooks attach.
// Close removes the directories in every hierarchy.
type Runc struct {
	// Binary is the absolute path of the pinned runc (default: runc in the
	// directory of the running program, where `make build` puts it). It is
	// never looked up on PATH.
	Binary string
	// StateDir holds runc's state (runc/), the bundles (bundles/) and the
	// network namespace files (netns/). Default /run/e2sgate.
	StateDir string
	// ImageDir is where images.Build puts a compartment's image when
	// Spec.Rootfs is empty.
	ImageDir string
	// CgroupParent is the cgroup directory under which every compartment
	// gets its own (default "e2sgate").
	CgroupParent string
	// IDPrefix prefixes the container ids (default "e2sgate-").
	IDPrefix string
	// RootHostID is the host id of the user namespace's root (default
	// DefaultRootHostID).
	RootHostID uint32
	// Net builds veth/nftables/BPF; nil means loopback-only and no-network
	// compartments only (NetVeth is refused).
	Net NetAttacher
	// SeccompListener is the socket of the supervisor's seccompnotify
	// agent: the profile then hands its denials to it. Empty: denials are
	// the kernel's silent EPERM.
	SeccompListener string
	// DenialReports are added to each compartment's layers: which kernel
	// layers' denials reach the audit log ("audit:seccomp") or not
	// ("unaudited:landlock").
	DenialReports []string
	Log           *slog.Logger
}

func (r *Runc) Name() string { return "runc" }

func (r *Runc) binary() string {
	if r.Binary != "" {
		return r.Binary
	}
	exe, err := os.Executable()
	if err != nil {
		return "" // refused by runc()
	}
	return filepath.Join(filepath.Dir(exe), "runc")
}

// runc returns the runc binary to run, or an error wrapping ErrNoRunc when
// it is not there. It does not run it: Check compares its version.
func (r *Runc) runc() (string, error) {
	bin := r.binary()
	if !filepath.IsAbs(bin) {
		return "", fmt.Errorf("%w: runc path %q is not absolute", ErrNoRunc, bin)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoRunc, err)
	}
	return bin, nil
}

func (r *Runc) stateDir() string { return cmp.Or(r.StateDir, "/run/e2sgate") }
func (r *Runc) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}
func (r *Runc) rootHostID() uint32 { return cmp.Or(r.RootHostID, DefaultRootHostID) }

// paths of one compartment.
type runcPaths struct {
	id, root, bundle, pidFile, netns, cgroups string
}

func (r *Runc) paths(name string) runcPaths {
	id := cmp.Or(r.IDPrefix, "e2sgate-") + name
	st := r.stateDir()
	return runcPaths{
		id:      id,
		root:    filepath.Join(st, "runc"),
		bundle:  filepath.Join(st, "bundles", id),
		pidFile: filepath.Join(st, "bundles", id, "pid"),
		netns:   filepath.Join(st, "netns", id),
		cgroups: "/" + cmp.Or(r.CgroupParent, "e2sgate") + "/" + name,
	}
}

// Start confines and starts compartment s. On error nothing is left behind.
func (r *Runc) Start(ctx context.Context, s Spec) (_ Process, err error) {
	bin, err := r.runc()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	pp, err := r.newPrepared(s)
	if err != nil {
		return nil, err
	}
	p := &runcProcess{prepared: pp, done: make(chan struct{})}
	// A previous supervisor may have died with this compartment running.
	p.cleanup()
	defer func() {
		if err != nil {
			p.cleanup()
		}
	}()
	if err := pp.setup(ctx); err != nil {
		return nil, err
	}

	args := []string{"--root", p.paths.root, "run", "--bundle", p.paths.bundle, "--pid-file", p.paths.pidFile}
	if n := len(s.ExtraFiles); n > 0 {
		args = append(args, "--preserve-fds", strconv.Itoa(n))
	}
	cmd := exec.Command(bin, append(args, p.paths.id)...)
	// Not a terminal: runc passes its own stdio to the program, so the
	// program writes straight into what we give here (go-plugin reads its
	// handshake line from stdout). A non-*os.File writer gets a pipe that
	// os/exec copies as data arrives, unbuffered.
	cmd.Stdin = s.Stdin
	cmd.Stdout = s.Stdout
	p.stderrTail = &tail{max: 4096}
	cmd.Stderr = p.stderrTail
	if s.Stderr != nil {
		cmd.Stderr = io.MultiWriter(s.Stderr, p.stderrTail)
	}
	cmd.ExtraFiles = s.ExtraFiles
	// Should the supervisor die, runc gets SIGTERM and forwards it to the
	// program; whatever is left is cleared by the next Start.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	onStarterThread(func() { err = cmd.Start() })
	if err != nil {
		return nil, fmt.Errorf("start %s: %w: %w", s.Name, ErrStart, err)
	}
	p.cmd = cmd
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := p.awaitPid(ctx); err != nil {
		_ = cmd.Process.Kill()
		<-p.done
		return nil, fmt.Errorf("start %s: %w: %w", s.Name, ErrStart, err)
	}
	p.log.Debug("compartment started", "pid", p.pid, "id", p.paths.id)
	return p, nil
}

// mountPoints creates the targets of the spec's mounts in the image (runc
// runs as the user namespace's root, which may not write the image).
func mountPoints(rootfs string, ms []Mount) error {
	for _, m := range ms {
		t := filepath.Join(rootfs, cmp.Or(m.Target, m.Source))
		fi, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("mount source: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(t), 0o755); err != nil {
			return err
		}
		if fi.IsDir() {
			err = os.Mkdir(t, 0o755)
		} else {
			var f *os.File
			if f, err = os.OpenFile(t, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444); err == nil {
				f.Close()
			}
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

type runcProcess struct {
	*prepared

	cmd        *exec.Cmd
	pid        int
	proc       *os.Process // pidfd-backed handle of the program
	stderrTail *tail
	done       chan struct{}
	waitErr    error

	closeOnce sync.Once
	closeErr  error
}

// awaitPid waits for runc to write the program's host pid.
func (p *runcProcess) awaitPid(ctx context.Context) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		if b, err := os.ReadFile(p.paths.pidFile); err == nil && len(b) > 0 {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				return fmt.Errorf("pid file: %w", err)
			}
			p.pid = pid
			// os.FindProcess holds a pidfd: signals can never hit a
			// recycled pid.
			p.proc, err = os.FindProcess(pid)
			return err
		}
		select {
		case <-p.done:
			return fmt.Errorf("runc: %v: %s", p.waitErr, strings.TrimSpace(p.stderrTail.String()))
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return errors.New("runc did not start the program in 30s")
		case <-tick.C:
		}
	}
}

func (p *runcProcess) Pid() int { return p.pid }

// Wait blocks until the program exits and returns its status as runc
// reports it (exit code, or 128+signal).
func (p *runcProcess) Wait() error {
	<-p.done
	return p.waitErr
}

func (p *runcProcess) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return p.proc.Signal(sig)
}

// Layers lists the confinement this runtime enforced for the compartment.
func (p *runcProcess) Layers() []string { return append(p.layers(), "runtime:runc") }

// Close kills the program if it still runs and removes the container, its
// state, bundle, network namespace and cgroup directories.
func (p *runcProcess) Close() error {
	p.closeOnce.Do(func() {
		select {
		case <-p.done:
		default:
			_ = p.proc.Kill() // the pid namespace dies with its init
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		p.closeErr = p.cleanup()
	})
	return p.closeErr
}

// cleanup removes whatever Start may have created for this compartment.
func (p *runcProcess) cleanup() error {
	t0 := time.Now()
	var errs []error
	if _, err := os.Stat(filepath.Join(p.paths.root, p.paths.id)); err == nil {
		out, err := exec.Command(p.cfg.binary(), "--root", p.paths.root, "delete", "--force", p.paths.id).CombinedOutput()
		if err != nil && !bytes.Contains(out, []byte("does not exist")) {
			errs = append(errs, fmt.Errorf("runc delete %s: %w: %s", p.paths.id, err, bytes.TrimSpace(out)))
		}
	}
	errs = append(errs, p.release())
	if err := errors.Join(errs...); err != nil {
		p.log.Warn("compartment cleanup", "err", err)
		return fmt.Errorf("close %s: %w", p.spec.Name, err)
	}
	p.log.Debug("compartment cleaned up", "took", time.Since(t0))
	return nil
}

// tail keeps the last max bytes written (runc's error message).
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, b...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
