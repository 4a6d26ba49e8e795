package bpfguard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Kinds of the optional BPF LSM layer.
const (
	KindPtrace   Kind = "lsm/ptrace"
	KindKill     Kind = "lsm/kill"
	KindFileOpen Kind = "lsm/file_open"
)

// lsmKinds is indexed by the KIND_* of lsm.c.
var lsmKinds = map[uint32]Kind{6: KindPtrace, 7: KindKill, 8: KindFileOpen}

// LSM is the optional BPF LSM layer: a task in a labelled cgroup may not
// ptrace or signal a task of another label, nor open a labelled file of
// another label. Unlabelled tasks (supervisor, host) are not restricted by
// it. It needs a kernel that loads BPF LSM programs (LSMAvailable); where
// it does not, the other layers (pid and user namespaces, seccomp, Landlock,
// mounts) keep these apart. Its programs are BPF links: they end with the
// supervisor, unlike the cgroup programs of Attach.
type LSM struct {
	objs   lsmObjects
	links  []link.Link
	reader *ringbuf.Reader
	onDeny func(Event)
	done   chan struct{}

	mu      sync.Mutex
	names   map[uint32]string // label -> compartment
	readErr error
	once    sync.Once
	err     error
}

// AttachLSM loads and attaches the LSM programs; onDeny (may be nil) gets
// every denial, one at a time. The error wraps ErrLSMUnavailable when the
// kernel refuses BPF LSM programs.
func AttachLSM(onDeny func(Event)) (_ *LSM, err error) {
	l := &LSM{onDeny: onDeny, done: make(chan struct{}), names: map[uint32]string{}}
	if err := loadLsmObjects(&l.objs, nil); err != nil {
		return nil, fmt.Errorf("%w: load: %w", ErrLSMUnavailable, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.release())
		}
	}()
	if l.reader, err = ringbuf.NewReader(l.objs.LsmEvents); err != nil {
		return nil, fmt.Errorf("bpf lsm: ring buffer: %w", err)
	}
	go l.read()
	for _, p := range []*ebpf.Program{l.objs.PtraceAccessCheck, l.objs.TaskKill, l.objs.FileOpen} {
		lk, err := link.AttachLSM(link.LSMOptions{Program: p})
		if err != nil {
			return nil, fmt.Errorf("%w: attach %s: %w", ErrLSMUnavailable, p, err)
		}
		l.links = append(l.links, lk)
	}
	return l, nil
}

// LabelCgroup gives the tasks of the cgroup v2 directory dir (compartment
// name) the label; labels are small non-zero numbers, one per compartment.
func (l *LSM) LabelCgroup(name string, label uint32, dir string) error {
	if label == 0 {
		return fmt.Errorf("bpf lsm %s: label 0: %w", name, ErrInvalid)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return fmt.Errorf("bpf lsm %s: %w", name, err)
	}
	// A cgroup v2 directory's inode number is the cgroup's id.
	if err := l.objs.TaskLabels.Put(st.Ino, label); err != nil {
		return fmt.Errorf("bpf lsm %s: label cgroup: %w", name, err)
	}
	l.mu.Lock()
	l.names[label] = name
	l.mu.Unlock()
	return nil
}

// LabelFiles gives every regular file under the paths the label (the
// compartment's private files, e.g. the keyhandler's keystore).
func (l *LSM) LabelFiles(label uint32, paths ...string) error {
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			var st syscall.Stat_t
			if err := syscall.Stat(p, &st); err != nil {
				return err
			}
			k := lsmFileKey{Ino: st.Ino, Dev: kernelDev(st.Dev)}
			return l.objs.FileLabels.Put(k, label)
		})
		if err != nil {
			return fmt.Errorf("bpf lsm: label %s: %w", root, err)
		}
	}
	return nil
}

// kernelDev turns a user-space st_dev into the kernel's internal dev_t
// (MKDEV: major << 20 | minor), which super_block.s_dev holds.
func kernelDev(dev uint64) uint32 {
	return unix.Major(dev)<<20 | unix.Minor(dev)
}

func (l *LSM) read() {
	defer close(l.done)
	var rec ringbuf.Record
	for {
		if err := l.reader.ReadInto(&rec); err != nil {
			if !errors.Is(err, ringbuf.ErrFlushed) && !errors.Is(err, os.ErrClosed) {
				l.readErr = fmt.Errorf("read lsm events: %w", err)
			}
			return
		}
		var ev lsmLsmEvent
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &ev); err != nil {
			l.readErr = fmt.Errorf("decode lsm event: %w", err)
			return
		}
		if l.onDeny == nil {
			continue
		}
		l.mu.Lock()
		subj, obj := l.names[ev.Subject], l.names[ev.Object]
		l.mu.Unlock()
		l.onDeny(Event{
			Compartment: subj,
			Object:      obj,
			CgroupID:    ev.CgroupId,
			Kind:        lsmKinds[ev.Kind],
			Target:      ev.Target,
			Pid:         int(ev.Pid),
			UID:         int(ev.Uid),
			Comm:        unix.ByteSliceToString(ev.Comm[:]),
		})
	}
}

// Close detaches the programs and stops the event reader.
func (l *LSM) Close() error {
	l.once.Do(func() { l.err = l.release() })
	return l.err
}

func (l *LSM) release() error {
	var errs []error
	for _, lk := range l.links {
		errs = append(errs, lk.Close())
	}
	l.links = nil
	if l.reader != nil {
		if err := l.reader.Flush(); err != nil {
			l.reader.Close()
		}
		<-l.done
		l.reader.Close()
		errs = append(errs, l.readErr)
	}
	errs = append(errs, l.objs.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bpf lsm: %w", err)
	}
	return nil
}
