// Package denials turns the kernel layers' denials (seccomp, Landlock)
// into audit events without letting a compartment flood the audit log or
// block the supervisor. The first denial of a kind (compartment, kind and
// what was denied: a syscall, an access right) becomes a record at once;
// repeats within the interval are counted and written as one record with
// the count when the interval ends, as the gate's limiter does for 429s.
// Add never blocks: records wait in a bounded queue, and what does not fit
// is counted into the next record of its kind.
package denials

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/e2sgate/e2sgate/gateagent"
)

// Defaults: one record per kind and interval; at most MaxKinds kinds
// tracked (more are counted under their compartment and layer with What
// "*"); QueueLen records waiting for the audit path.
const (
	DefaultInterval = 10 * time.Second
	MaxKinds        = 512
	QueueLen        = 256
)

type key struct{ compartment, kind, what string }

type entry struct {
	written time.Time // last record of this kind
	pending int       // denials since, not yet recorded
	last    gateagent.Event
}

// Aggregator collects denials and hands records to emit (from Run's
// goroutine only).
type Aggregator struct {
	interval time.Duration
	emit     func(gateagent.Event)
	now      func() time.Time

	mu    sync.Mutex
	kinds map[key]*entry
	queue chan gateagent.Event
}

// New returns an Aggregator writing through emit; interval 0 means
// DefaultInterval.
func New(interval time.Duration, emit func(gateagent.Event)) *Aggregator {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Aggregator{interval: interval, emit: emit, now: time.Now, kinds: map[key]*entry{}, queue: make(chan gateagent.Event, QueueLen)}
}

// Add reports one denial; what names what was denied within the event's
// compartment and kind (the syscall, the access). It never blocks.
func (a *Aggregator) Add(what string, e gateagent.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := key{e.Compartment, e.Kind, what}
	en := a.kinds[k]
	if en == nil && len(a.kinds) >= MaxKinds {
		k.what = "*"
		en = a.kinds[k]
	}
	if en == nil {
		en = &entry{}
		a.kinds[k] = en
	}
	now := a.now()
	en.last = e
	if !en.written.IsZero() && now.Sub(en.written) < a.interval {
		en.pending++
		return
	}
	e.Count = 1
	select {
	case a.queue <- e:
		en.written = now
	default:
		en.pending++ // written with the next flush
	}
}

// Flush turns every kind's pending count into one record on the queue
// (what does not fit stays pending) and forgets kinds idle for two
// intervals. Run calls it every interval.
func (a *Aggregator) Flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for k, en := range a.kinds {
		if en.pending == 0 {
			if now.Sub(en.written) >= 2*a.interval {
				delete(a.kinds, k)
			}
			continue
		}
		e := en.last
		e.Count = en.pending
		e.Detail = fmt.Sprintf("%s (%d denials of this kind since the last record, this one the last)", e.Detail, en.pending)
		if k.what == "*" {
			e.Detail = fmt.Sprintf("%s (%d denials of kinds beyond the %d tracked, this one the last)", en.last.Detail, en.pending, MaxKinds)
		}
		select {
		case a.queue <- e:
			en.pending, en.written = 0, now
		default:
			return // the queue is full: the rest waits for the next flush
		}
	}
}

// Run writes queued records and flushes every interval until ctx ends;
// then it flushes once more and writes what is queued.
func (a *Aggregator) Run(ctx context.Context) {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case e := <-a.queue:
			a.emit(e)
		case <-t.C:
			a.Flush()
		case <-ctx.Done():
			a.Flush()
			for {
				select {
				case e := <-a.queue:
					a.emit(e)
				default:
					return
				}
			}
		}
	}
}
