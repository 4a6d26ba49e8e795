package sandbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Containerd runs compartments as containerd tasks, for hosts that run
// containerd (Debian's 1.6 daemon accepts this v2 client). The confinement
// is the runc runtime's, byte for byte: the same preparation (image, netns,
// NetAttacher, cgroup2 directory) and the same complete OCI spec, which the
// daemon's runc shim executes. Nothing is left to containerd's defaults —
// they would mean no seccomp, no user namespace and Docker's default
// capability set — because the spec is passed whole (WithSpec), not built
// from oci.WithDefaultSpec.
//
// Standard output and error do not reach the program as our file
// descriptors (as with runc) but travel program → shim → FIFOs → this
// process, which copies them into Spec.Stdout/Stderr until the program is
// gone; an *os.File there is duplicated for that copy, so callers may close
// theirs after Start exactly as with runc.
//
// Limitation: containerd cannot hand file descriptors to a task, so a Spec
// with ExtraFiles (outside's listening socket, inside's SOCKS listeners) is
// refused; cmd/e2sgated runs those compartments with the runc runtime.
type Containerd struct {
	// Runc holds the confinement settings shared with the runc runtime
	// (StateDir, ImageDir, CgroupParent, IDPrefix, RootHostID, Net, Log);
	// Runc.Binary is the runc the shim runs (the pinned one, as for runc).
	Runc
	// Address is containerd's gRPC socket.
	Address string
	// Namespace is the containerd namespace of the compartments
	// (default "e2sgate").
	Namespace string

	once   sync.Once
	client *containerd.Client
	err    error
}

func (c *Containerd) Name() string { return "containerd" }

func (c *Containerd) connect() (*containerd.Client, error) {
	c.once.Do(func() {
		c.client, c.err = containerd.New(c.Address, containerd.WithDefaultNamespace(c.namespace()), containerd.WithTimeout(10*time.Second))
		if c.err != nil {
			c.err = fmt.Errorf("containerd %s: %w", c.Address, c.err)
		}
	})
	return c.client, c.err
}

func (c *Containerd) namespace() string { return cmp.Or(c.Namespace, "e2sgate") }

// Close closes the connection to the daemon.
func (c *Containerd) Close() error {
	if c.client != nil {
		return c.client.Close()
	}
	return nil
}

// Start confines and starts compartment s as a containerd task.
func (c *Containerd) Start(ctx context.Context, s Spec) (_ Process, err error) {
	if len(s.ExtraFiles) > 0 {
		return nil, fmt.Errorf("start %s: %w: file descriptors (ExtraFiles)", s.Name, ErrUnsupported)
	}
	// An empty BinaryName would let the shim run "runc" from its PATH.
	bin, err := c.runc()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	client, err := c.connect()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w: %w", s.Name, ErrStart, err)
	}
	pp, err := c.Runc.newPrepared(s)
	if err != nil {
		return nil, err
	}
	ctx = namespaces.WithNamespace(ctx, c.namespace())
	p := &ctrdProcess{prepared: pp, c: c, client: client, done: make(chan struct{})}
	p.cleanup(ctx) // what a crashed supervisor left
	defer func() {
		if err != nil {
			ctx := context.WithoutCancel(ctx)
			if p.task != nil {
				// Deleting our task handle also closes its FIFOs.
				_, _ = p.task.Delete(ctx, containerd.WithProcessKill)
			}
			if p.cancelWait != nil {
				p.cancelWait()
			}
			p.closeFiles()
			p.cleanup(ctx)
		}
	}()
	if err := pp.setup(ctx); err != nil {
		return nil, err
	}
	p.ctr, err = client.NewContainer(ctx, pp.paths.id,
		containerd.WithSpec(pp.oci),
		containerd.WithRuntime("io.containerd.runc.v2", &options.Options{BinaryName: bin, Root: filepath.Join(c.stateDir(), "containerd-runc")}))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w: container: %w", s.Name, ErrStart, err)
	}
	// The shim writes the program's stdout and stderr into FIFOs; the client
	// copies from them into Spec.Stdout/Stderr in this process, for as long
	// as the program runs. An *os.File is therefore duplicated here, as
	// os/exec does for runc: the caller may (and the supervisor does) close
	// its copy right after Start, and sees EOF once the program has exited
	// and its output is copied (Wait closes the duplicates).
	stdout, err := p.ownWriter(s.Stdout)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w: stdout: %w", s.Name, ErrStart, err)
	}
	stderr, err := p.ownWriter(s.Stderr)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w: stderr: %w", s.Name, ErrStart, err)
	}
	fifos := filepath.Join(pp.paths.bundle, "fifo")
	p.task, err = p.ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, stdout, stderr), cio.WithFIFODir(fifos)))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w: task: %w", s.Name, ErrStart, err)
	}
	waitCtx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), c.namespace()))
	p.cancelWait = cancel
	exitc, err := p.task.Wait(waitCtx)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w: wait: %w", s.Name, ErrStart, err)
	}
	if err := p.task.Start(ctx); err != nil {
		return nil, fmt.Errorf("start %s: %w: %w", s.Name, ErrStart, err)
	}
	p.pid = int(p.task.Pid())
	if p.proc, err = os.FindProcess(p.pid); err != nil {
		return nil, fmt.Errorf("start %s: %w: %w", s.Name, ErrStart, err)
	}
	go func() {
		st := <-exitc
		code, _, err := st.Result()
		switch {
		case err != nil:
			p.waitErr = fmt.Errorf("wait %s: %w", s.Name, err)
		case code != 0:
			p.waitErr = fmt.Errorf("%s: %w: status %d", s.Name, ErrExit, code)
		}
		// Like exec.Cmd.Wait: return once the output is copied, and close
		// our copies of the caller's files, so its reader sees EOF.
		p.finishIO()
		close(p.done)
	}()
	p.log.Debug("compartment started", "pid", p.pid, "id", pp.paths.id, "runtime", "containerd")
	return p, nil
}

type ctrdProcess struct {
	*prepared
	c          *Containerd
	client     *containerd.Client
	ctr        containerd.Container
	task       containerd.Task
	pid        int
	proc       *os.Process
	files      []*os.File // our duplicates of the caller's stdout/stderr
	cancelWait context.CancelFunc
	done       chan struct{}
	waitErr    error
	closeOnce  sync.Once
	closeErr   error
}

// ownWriter returns w, or for an *os.File a duplicate that p closes when
// the program's output is copied; nil becomes io.Discard.
func (p *ctrdProcess) ownWriter(w io.Writer) (io.Writer, error) {
	switch f := w.(type) {
	case nil:
		return io.Discard, nil
	case *os.File:
		if f == nil {
			return io.Discard, nil
		}
		d, err := dupFile(f)
		if err != nil {
			return nil, err
		}
		p.files = append(p.files, d)
		return d, nil
	}
	return w, nil
}

// dupFile duplicates f (close-on-exec). The duplicate shares f's open file
// description, so it stays usable after the caller closes f.
func dupFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var dupErr error
	if err := rc.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), dupErr)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// finishIO waits until the client has copied what the shim relayed from
// the exited program (bounded: a stuck copy is cancelled), then closes the
// duplicated files.
func (p *ctrdProcess) finishIO() {
	if i := p.task.IO(); i != nil {
		copied := make(chan struct{})
		go func() { i.Wait(); close(copied) }()
		select {
		case <-copied:
		case <-time.After(5 * time.Second):
			p.log.Warn("compartment output still open 5s after exit; cancelling the copy")
			i.Cancel()
			<-copied
		}
	}
	p.closeFiles()
}

func (p *ctrdProcess) closeFiles() {
	for _, f := range p.files {
		f.Close()
	}
	p.files = nil
}

func (p *ctrdProcess) Pid() int { return p.pid }

func (p *ctrdProcess) Wait() error {
	<-p.done
	return p.waitErr
}

func (p *ctrdProcess) Signal(sig os.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	return p.proc.Signal(sig)
}

func (p *ctrdProcess) Layers() []string { return append(p.layers(), "runtime:containerd") }

func (p *ctrdProcess) Close() error {
	p.closeOnce.Do(func() {
		ctx := namespaces.WithNamespace(context.Background(), p.c.namespace())
		select {
		case <-p.done:
		default:
			_ = p.proc.Signal(syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
			}
		}
		var errs []error
		// Through our handle, so the client closes the task's FIFOs (the
		// handle cleanup loads has no IO attached).
		if _, err := p.task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("close %s: delete task: %w", p.spec.Name, err))
		}
		if p.cancelWait != nil {
			p.cancelWait()
		}
		p.closeErr = errors.Join(append(errs, p.cleanup(ctx))...)
	})
	return p.closeErr
}

// cleanup deletes the task and the container (by id, so it also clears what
// a crashed supervisor left), then what the preparation made.
func (p *ctrdProcess) cleanup(ctx context.Context) error {
	var errs []error
	ctr, err := p.client.LoadContainer(ctx, p.paths.id)
	switch {
	case errdefs.IsNotFound(err):
	case err != nil:
		errs = append(errs, fmt.Errorf("load container: %w", err))
	default:
		if task, err := ctr.Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete task: %w", err))
			}
		} else if !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("load task: %w", err))
		}
		if err := ctr.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete container: %w", err))
		}
	}
	errs = append(errs, p.release())
	if err := errors.Join(errs...); err != nil {
		p.log.Warn("compartment cleanup", "err", err)
		return fmt.Errorf("close %s: %w", p.spec.Name, err)
	}
	return nil
}
