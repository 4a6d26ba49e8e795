package denials

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/gateagent"
)

// drain takes what the aggregator queued for the audit path.
func drain(a *Aggregator) []gateagent.Event {
	var out []gateagent.Event
	for {
		select {
		case e := <-a.queue:
			out = append(out, e)
		default:
			return out
		}
	}
}

func denial(syscall string) gateagent.Event {
	return gateagent.Event{Compartment: "outside", Kind: "kernel/seccomp", Decision: "deny", Reason: "kernel.syscall_denied",
		Detail: syscall + "(0) pid=7 exe=probe"}
}

func total(evs []gateagent.Event) int {
	n := 0
	for _, e := range evs {
		n += e.Count
	}
	return n
}

// TestFloodAggregated: a loop of 10 000 denials of one syscall becomes one
// record at once and one with the count at the end of the interval; every
// denial is counted, none lost.
func TestFloodAggregated(t *testing.T) {
	now := time.Unix(1000, 0)
	a := New(10*time.Second, nil)
	a.now = func() time.Time { return now }
	for range 10000 {
		a.Add("ptrace", denial("ptrace"))
	}
	first := drain(a)
	if len(first) != 1 || first[0].Count != 1 || first[0].Detail != "ptrace(0) pid=7 exe=probe" {
		t.Fatalf("at once: %+v, want the first denial alone", first)
	}
	now = now.Add(10 * time.Second)
	a.Flush()
	rest := drain(a)
	if len(rest) != 1 || rest[0].Count != 9999 || !strings.Contains(rest[0].Detail, "9999 denials") {
		t.Fatalf("after the interval: %+v, want one record counting 9999", rest)
	}
	if rest[0].Compartment != "outside" || rest[0].Kind != "kernel/seccomp" || rest[0].Reason != "kernel.syscall_denied" {
		t.Errorf("aggregated record lost its identity: %+v", rest[0])
	}
	// Quiet now: nothing more, and the kind is forgotten after two intervals.
	now = now.Add(20 * time.Second)
	a.Flush()
	if got := drain(a); len(got) != 0 || len(a.kinds) != 0 {
		t.Errorf("idle: records %+v, kinds %d", got, len(a.kinds))
	}
}

// TestKindsBounded: 10 000 different syscalls (an attacker walking the
// table) stay within MaxKinds tracked kinds and the queue; every denial is
// still counted once all is flushed.
func TestKindsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	a := New(time.Second, nil)
	a.now = func() time.Time { return now }
	var got []gateagent.Event
	for i := range 10000 {
		a.Add(fmt.Sprint("sys", i), denial(fmt.Sprint("sys", i)))
		if i%100 == 0 {
			got = append(got, drain(a)...) // the audit path keeps up now and then
		}
	}
	if len(a.kinds) > MaxKinds+1 {
		t.Fatalf("%d kinds tracked, bound %d", len(a.kinds), MaxKinds+1)
	}
	for range 100 {
		now = now.Add(time.Second)
		a.Flush()
		got = append(got, drain(a)...)
	}
	if n := total(got); n != 10000 {
		t.Errorf("records count %d denials, want 10000", n)
	}
	if len(got) > MaxKinds+1+10000/100*QueueLen {
		t.Errorf("%d records", len(got))
	}
	t.Logf("10000 denials of 10000 syscalls: %d records", len(got))
}

// TestQueueFullCounts: with nobody draining, Add still returns at once and
// the denials that did not fit are counted into later records.
func TestQueueFullCounts(t *testing.T) {
	now := time.Unix(1000, 0)
	a := New(time.Second, nil)
	a.now = func() time.Time { return now }
	for i := range QueueLen + 50 {
		a.Add(fmt.Sprint("sys", i), denial(fmt.Sprint("sys", i)))
	}
	got := drain(a)
	if len(got) != QueueLen {
		t.Fatalf("queued %d, want the queue's %d", len(got), QueueLen)
	}
	now = now.Add(time.Second)
	a.Flush()
	got = append(got, drain(a)...)
	if n := total(got); n != QueueLen+50 {
		t.Errorf("records count %d denials, want %d", n, QueueLen+50)
	}
}
