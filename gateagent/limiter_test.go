package gateagent

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// clock is a time the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// limitedAgent is the real agent (embedded registry and policy) under lim,
// on a clock that moves only when the test moves it.
func limitedAgent(t *testing.T, lim Limits) (*Agent, *memAudit, *clock) {
	t.Helper()
	a, audit, _ := newTestAgent(t)
	for _, n := range comps {
		a.Attach(n, &counter{})
	}
	a.SetLimits(lim)
	c := newClock()
	a.limits.Load().now = c.now
	return a, audit, c
}

// counter is a target that answers 200 and counts, safe for concurrent calls.
type counter struct{ n atomic.Int64 }

func (c *counter) Handle(context.Context, *callpb.Call) (*callpb.Response, error) {
	c.n.Add(1)
	return &callpb.Response{Status: 200}, nil
}

// blocker is a target that holds each call until released.
type blocker struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blocker) Handle(ctx context.Context, _ *callpb.Call) (*callpb.Response, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return &callpb.Response{Status: 200}, nil
}

func catalogue() *callpb.Call { return &callpb.Call{Script: "purchasing/catalogue", Method: "GET"} }

func sign() *callpb.Call {
	return &callpb.Call{Script: "keyhandler/sign-offer", Method: "POST", Body: []byte("{}"), Meta: map[string]string{"CONTENT_TYPE": "application/json"}}
}

// limitRecords are the limiter's aggregated records of caller and the
// calls they stand for.
func limitRecords(recs []auditlog.Record, caller string) (records, calls int) {
	for _, r := range recs {
		if r.Caller == caller && r.Script == limitScript {
			records++
			calls += r.Count
		}
	}
	return records, calls
}

func TestBucket(t *testing.T) {
	t0 := newClock().now()
	tests := []struct {
		name  string
		rate  float64
		burst int
		at    []time.Duration // offsets from t0 of successive takes
		want  []bool
	}{
		{"burst then empty", 1, 3, []time.Duration{0, 0, 0, 0}, []bool{true, true, true, false}},
		{"refills at rate", 2, 1, []time.Duration{0, 0, 500 * time.Millisecond, 600 * time.Millisecond}, []bool{true, false, true, false}},
		{"never above burst", 100, 2, []time.Duration{0, time.Hour, time.Hour, time.Hour}, []bool{true, true, true, false}},
		{"clock going back gains nothing", 1, 1, []time.Duration{time.Second, 0, 0}, []bool{true, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bucket
			for i, at := range tt.at {
				if got := b.take(t0.Add(at), tt.rate, tt.burst); got != tt.want[i] {
					t.Fatalf("take %d at +%s = %v, want %v", i, at, got, tt.want[i])
				}
			}
		})
	}
}

// TestFloodDoesNotStarve: while outside floods the gate with calls the
// policy denies, purchasing's calls to keyhandler all succeed; outside gets
// its burst decided and the rest 429, recorded in two records with counts.
func TestFloodDoesNotStarve(t *testing.T) {
	const (
		flooders, floodEach = 8, 1000
		callers, callEach   = 4, 50
	)
	lim := Limits{Concurrent: 64, PerSecond: 100, Burst: 200, ReportInterval: time.Minute}
	a, audit, _ := limitedAgent(t, lim)
	ctx := context.Background()

	var denied, refused, other, ok, failed atomic.Int64
	var wg sync.WaitGroup
	for range flooders {
		wg.Go(func() {
			for range floodEach {
				call := sign() // outside may not sign: the policy denies it
				switch r := a.Forward(ctx, "outside", call); {
				case r.Status == 429 && r.Reason == reasonRate:
					refused.Add(1)
				case r.Status == 403:
					denied.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	for range callers {
		wg.Go(func() {
			for range callEach {
				if r := a.Forward(ctx, "purchasing", sign()); r.Status == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	a.FlushLimits()

	t.Logf("outside: %d calls, %d denied by policy, %d refused 429; purchasing: %d of %d succeeded",
		flooders*floodEach, denied.Load(), refused.Load(), ok.Load(), callers*callEach)
	if ok.Load() != callers*callEach || failed.Load() != 0 {
		t.Fatalf("purchasing: %d succeeded, %d failed; want all %d to succeed", ok.Load(), failed.Load(), callers*callEach)
	}
	if denied.Load() != int64(lim.Burst) || refused.Load() != flooders*floodEach-int64(lim.Burst) || other.Load() != 0 {
		t.Fatalf("outside: %d denied, %d refused, %d other; want %d denied (its burst), the rest refused", denied.Load(), refused.Load(), other.Load(), lim.Burst)
	}
	recs := audit.all()
	n, calls := limitRecords(recs, "outside")
	if n > 2 || int64(calls) != refused.Load() {
		t.Fatalf("outside's refusals in %d records counting %d calls; want at most 2 records counting %d", n, calls, refused.Load())
	}
	if total := len(recs); total > int(lim.Burst)+callers*callEach+2 {
		t.Fatalf("%d audit records for %d calls: the flood flooded the log", total, flooders*floodEach+callers*callEach)
	}
	if n, _ := limitRecords(recs, "purchasing"); n != 0 {
		t.Fatalf("purchasing has %d refusal records, want 0", n)
	}
}

// TestConcurrentLimit: a caller with as many calls in flight as it may
// have is refused another, and another caller is not.
func TestConcurrentLimit(t *testing.T) {
	const limit = 3
	a, audit, _ := limitedAgent(t, Limits{Concurrent: limit})
	b := &blocker{entered: make(chan struct{}), release: make(chan struct{})}
	a.Attach("purchasing", b)
	ctx := context.Background()

	var wg sync.WaitGroup
	for range limit {
		wg.Go(func() { a.Forward(ctx, "outside", catalogue()) })
		<-b.entered
	}
	if r := a.Forward(ctx, "outside", catalogue()); r.Status != 429 || r.Reason != reasonConcurrent {
		t.Fatalf("call over the limit = %d %s, want 429 %s", r.Status, r.Reason, reasonConcurrent)
	}
	if r := a.Forward(ctx, "purchasing", sign()); r.Status != 200 {
		t.Fatalf("another caller's call = %d %s, want 200", r.Status, r.Reason)
	}
	close(b.release)
	wg.Wait()
	go func() { <-b.entered }()
	if r := a.Forward(ctx, "outside", catalogue()); r.Status != 200 {
		t.Fatalf("after the calls ended = %d %s, want 200", r.Status, r.Reason)
	}
	if n, calls := limitRecords(audit.all(), "outside"); n != 1 || calls != 1 {
		t.Fatalf("refusal records: %d counting %d, want 1 counting 1", n, calls)
	}
}

// TestScriptRate: a registration's max_rate bounds that script alone.
func TestScriptRate(t *testing.T) {
	a, _, c := limitedAgent(t, Limits{})
	a.set.Load().Registry.Lookup("purchasing/catalogue").MaxRate = 2
	ctx := context.Background()
	steps := []struct {
		name    string
		advance time.Duration
		call    *callpb.Call
		status  int32
		reason  string
	}{
		{"first", 0, catalogue(), 200, "pol.allowed"},
		{"second", 0, catalogue(), 200, "pol.allowed"},
		{"third in the same second", 0, catalogue(), 429, reasonScriptRate},
		{"another script", 0, &callpb.Call{Script: "purchasing/private", Method: "GET"}, 200, ""},
		{"a second later", time.Second, catalogue(), 200, "pol.allowed"},
	}
	for _, s := range steps {
		c.add(s.advance)
		r := a.Forward(ctx, "outside", s.call)
		if r.Status != s.status || (s.reason != "" && r.Reason != s.reason && s.status == 429) {
			t.Fatalf("%s: %d %s, want %d %s", s.name, r.Status, r.Reason, s.status, s.reason)
		}
	}
}

// TestRefusalRecords: one record per caller and reason per interval, with
// the count of the calls it stands for.
func TestRefusalRecords(t *testing.T) {
	lim := Limits{PerSecond: 1, Burst: 1, ReportInterval: 10 * time.Second}
	a, audit, c := limitedAgent(t, lim)
	ctx := context.Background()
	a.Forward(ctx, "outside", catalogue()) // the burst
	steps := []struct {
		advance     time.Duration
		calls       int
		wantRecords int
		wantCount   int // of the last record
	}{
		{0, 1, 1, 1},                          // the first refusal is recorded at once
		{time.Millisecond, 5, 1, 1},           // then counted
		{10 * time.Second, 1, 2, 6},           // the interval is over: one record for six
		{10*time.Second + time.Hour, 0, 2, 6}, // nothing pending, nothing written
	}
	for i, s := range steps {
		c.add(s.advance)
		for range s.calls {
			if r := a.Forward(ctx, "outside", &callpb.Call{Script: "purchasing/admin", Method: "GET"}); r.Status != 429 {
				// The clock moved: a token came back; spend it and go on.
				if r = a.Forward(ctx, "outside", &callpb.Call{Script: "purchasing/admin", Method: "GET"}); r.Status != 429 {
					t.Fatalf("step %d: %d, want 429", i, r.Status)
				}
			}
		}
		var last auditlog.Record
		n := 0
		for _, r := range audit.all() {
			if r.Script == limitScript {
				n++
				last = r
			}
		}
		if n != s.wantRecords || last.Count != s.wantCount || last.Status != 429 || last.Reason != reasonRate {
			t.Fatalf("step %d: %d records, last %+v; want %d, count %d", i, n, last, s.wantRecords, s.wantCount)
		}
	}
}
