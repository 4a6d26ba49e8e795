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
// Limitation: containerd cannot hand file descriptors to a task, so a Spec
// with ExtraFiles (the outside compartment's listening socket) is refused;
// run the outside compartment with the runc runtime.
type Containerd struct {
	// Runc holds the confinement settings shared with the runc runtime
	// (StateDir, ImageDir, CgroupParent, IDPrefix, RootHostID, Net, Log);
	// Runc.Binary is the runc the shim runs.
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
			p.cleanup(context.WithoutCancel(ctx))
		}
	}()
	if err := pp.setup(ctx); err != nil {
		return nil, err
	}
	p.ctr, err = client.NewContainer(ctx, pp.paths.id,
		containerd.WithSpec(pp.oci),
		containerd.WithRuntime("io.containerd.runc.v2", &options.Options{BinaryName: c.binary(), Root: filepath.Join(c.stateDir(), "containerd-runc")}))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w: container: %w", s.Name, ErrStart, err)
	}
	stdout, stderr := s.Stdout, s.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
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
	cancelWait context.CancelFunc
	done       chan struct{}
	waitErr    error
	closeOnce  sync.Once
	closeErr   error
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
		p.closeErr = p.cleanup(ctx)
		if p.cancelWait != nil {
			p.cancelWait()
		}
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
