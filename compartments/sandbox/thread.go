package sandbox

import (
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// inNewNetns runs f on an OS thread moved into a new network namespace and
// moves the thread back afterwards. Only if moving back fails is the thread
// left locked, so Go discards it rather than run other goroutines in the
// wrong namespace. (Discarding threads is avoided otherwise: a child started
// with Pdeathsig from a thread gets that signal when the thread ends.)
func inNewNetns(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("own netns: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with this goroutine.
			errc <- fmt.Errorf("back to own netns: %w (after %v)", err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// starter is one OS thread, locked for the life of the process, from which
// every runc process is started. Pdeathsig is tied to the thread that forked
// the child, not to the process: started from an ordinary thread, runc
// would be signalled whenever Go ends that thread (for instance after some
// other code leaves a goroutine locked to it).
var starter struct {
	once sync.Once
	reqs chan func()
}

func onStarterThread(f func()) {
	starter.once.Do(func() {
		starter.reqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked
			for f := range starter.reqs {
				f()
			}
		}()
	})
	done := make(chan struct{})
	starter.reqs <- func() { f(); close(done) }
	<-done
}
