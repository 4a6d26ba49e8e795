package gateagent

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// The agent's share of bounding a caller (the transport's is in
// transport.go: connections, streams, message size). Each caller — the
// listener a call arrived on — has its own budget: calls in flight and
// calls per second (a token bucket), and a registration may add a rate of
// its own (max_rate) for the scripts where that matters. A call over a
// budget is answered 429 before anything in it is matched, so a flood
// costs the gate a lock and a counter, and costs the other callers
// nothing: their budgets are their own.
//
// Refusals are audited in aggregate: at most one record per caller and
// reason per report interval, with the number of calls it stands for
// (Record.Count), so a flood cannot flood the log.

// Limits are each caller's budget at the gate; a zero field takes its
// default (DefaultLimits).
type Limits struct {
	Concurrent     int           `json:"concurrent"`      // calls one caller may have in flight
	PerSecond      float64       `json:"per_second"`      // calls per second one caller may make, sustained
	Burst          int           `json:"burst"`           // calls one caller may make at once above that rate
	ReportInterval time.Duration `json:"report_interval"` // at most one refusal record per caller and reason per interval
}

// DefaultLimits leave an honest web front's peaks alone (the transport lets
// a caller hold 64×64 streams; a browser page is a few calls) and cap what
// one compartment can make the gate do.
var DefaultLimits = Limits{Concurrent: 128, PerSecond: 500, Burst: 1000, ReportInterval: 10 * time.Second}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.Concurrent > 0 {
		d.Concurrent = l.Concurrent
	}
	if l.PerSecond > 0 {
		d.PerSecond = l.PerSecond
	}
	if l.Burst > 0 {
		d.Burst = l.Burst
	}
	if l.ReportInterval > 0 {
		d.ReportInterval = l.ReportInterval
	}
	return d
}

// Reason ids of the limiter's refusals (policies/reasons.yaml).
const (
	reasonConcurrent = "gate.too_many_calls"
	reasonRate       = "gate.rate_limited"
	reasonScriptRate = "gate.script_rate_limited"
	reasonConns      = "gate.too_many_connections" // the transport's (transport.go), recorded here alike
	limitScript      = "gate/limit"                // the script of the limiter's records
)

// limiter holds every caller's budget. Its maps are bounded: callers are
// the gate's listeners, scripts the registered ones with a max_rate.
type limiter struct {
	lim    Limits
	now    func() time.Time
	rateOf func(script string) float64 // a registration's max_rate, 0: none
	audit  Auditor
	log    *slog.Logger

	mu      sync.Mutex
	callers map[string]*budget
	scripts map[[2]string]*bucket // (caller, script)
	refused map[[2]string]*refusals
}

type budget struct {
	inflight int
	rate     bucket
}

// bucket is a token bucket: it holds at most burst tokens and gains rate a
// second; a call takes one.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate float64, burst int) bool {
	if b.last.IsZero() {
		b.tokens, b.last = float64(burst), now
	} else if d := now.Sub(b.last); d > 0 { // a clock going back gains nothing
		b.tokens, b.last = min(float64(burst), b.tokens+d.Seconds()*rate), now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// refusals are one caller's refusals for one reason not yet recorded.
type refusals struct {
	written time.Time // when the last record was written
	pending int       // refusals since then
	script  string    // the last refused call's script and id, as detail
	reqID   string
	timer   *time.Timer
}

func newLimiter(log *slog.Logger, audit Auditor, lim Limits, rateOf func(string) float64) *limiter {
	return &limiter{lim: lim.withDefaults(), now: time.Now, rateOf: rateOf, audit: audit, log: log,
		callers: map[string]*budget{}, scripts: map[[2]string]*bucket{}, refused: map[[2]string]*refusals{}}
}

// admit takes a call of caller into its budget. It returns the release to
// call when the call is done, or the 429 answer if the call is over budget
// (the refusal is then recorded in aggregate).
func (l *limiter) admit(caller string, call *callpb.Call) (release func(), refused *callpb.Response) {
	var rate float64
	if len(call.Script) <= maxScript {
		rate = l.rateOf(call.Script)
	}
	now := l.now()
	l.mu.Lock()
	b := l.callers[caller]
	if b == nil {
		b = &budget{}
		l.callers[caller] = b
	}
	reason := ""
	switch {
	case b.inflight >= l.lim.Concurrent:
		reason = reasonConcurrent
	case !b.rate.take(now, l.lim.PerSecond, l.lim.Burst):
		reason = reasonRate
	case rate > 0 && !l.scriptBucket(caller, call.Script).take(now, rate, max(1, int(rate))):
		reason = reasonScriptRate
	}
	if reason == "" {
		b.inflight++
		l.mu.Unlock()
		var once sync.Once
		return func() {
			once.Do(func() {
				l.mu.Lock()
				b.inflight--
				l.mu.Unlock()
			})
		}, nil
	}
	rec, ok := l.refuse(now, caller, reason, call)
	l.mu.Unlock()
	if ok {
		l.write(rec)
	}
	return nil, deny(call, 429, reason, "too many calls; try again shortly")
}

// refuseConn records a connection the transport closed at once because
// caller already held as many open as it may (maxConns), in aggregate like
// a refused call.
func (l *limiter) refuseConn(caller string) {
	now := l.now()
	l.mu.Lock()
	rec, ok := l.refuse(now, caller, reasonConns, &callpb.Call{})
	l.mu.Unlock()
	if ok {
		l.write(rec)
	}
}

func (l *limiter) scriptBucket(caller, script string) *bucket {
	k := [2]string{caller, script}
	s := l.scripts[k]
	if s == nil {
		s = &bucket{}
		l.scripts[k] = s
	}
	return s
}

// refuse counts a refusal; it returns the record to write now if none was
// written for caller and reason within the report interval, and otherwise
// makes sure the pending count is written when the interval ends.
// l.mu is held.
func (l *limiter) refuse(now time.Time, caller, reason string, call *callpb.Call) (auditlog.Record, bool) {
	k := [2]string{caller, reason}
	r := l.refused[k]
	if r == nil {
		r = &refusals{}
		l.refused[k] = r
	}
	r.pending++
	r.script, r.reqID = clip(call.Script, maxScript), call.ReqId
	if !r.written.IsZero() && now.Sub(r.written) < l.lim.ReportInterval {
		if r.timer == nil {
			r.timer = time.AfterFunc(l.lim.ReportInterval-now.Sub(r.written), func() { l.flushKey(k) })
		}
		return auditlog.Record{}, false
	}
	return l.take(now, k, r), true
}

// take turns r's pending refusals into one record. l.mu is held.
func (l *limiter) take(now time.Time, k [2]string, r *refusals) auditlog.Record {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	// The script is the gate's own name for the record (a caller's script
	// names would make a metric label per flooded name); the last refused
	// call's script is detail.
	rec := auditlog.Record{Time: now.UTC(), ReqID: newReqID(), Caller: k[0], Script: limitScript,
		Decision: "deny", Reason: k[1], Status: 429, Count: r.pending,
		Detail: clip(fmt.Sprintf("%d calls refused since the last record (limits: %d in flight, %g/s, burst %d, or the script's max_rate); the last was %s, req_id %s",
			r.pending, l.lim.Concurrent, l.lim.PerSecond, l.lim.Burst, r.script, r.reqID), maxDetail)}
	if k[1] == reasonConns { // no call was read: no status, script or id
		rec.Status = 0
		rec.Detail = fmt.Sprintf("%d connections to the gate socket closed at once since the last record (at most %d open per caller)", r.pending, maxConns)
	}
	r.written, r.pending = now, 0
	return rec
}

func (l *limiter) flushKey(k [2]string) {
	l.mu.Lock()
	r := l.refused[k]
	if r == nil || r.pending == 0 {
		l.mu.Unlock()
		return
	}
	rec := l.take(l.now(), k, r)
	l.mu.Unlock()
	l.write(rec)
}

// flush writes every pending refusal count now (at shutdown, and in tests).
func (l *limiter) flush() {
	l.mu.Lock()
	var recs []auditlog.Record
	for k, r := range l.refused {
		if r.pending > 0 {
			recs = append(recs, l.take(l.now(), k, r))
		}
	}
	l.mu.Unlock()
	for _, rec := range recs {
		l.write(rec)
	}
}

func (l *limiter) write(rec auditlog.Record) {
	if err := l.audit.Append(rec); err != nil {
		l.log.Error("audit log unwritable; refused calls not recorded", "compartment", rec.Caller, "reason", rec.Reason, "count", rec.Count, "error", err)
	}
}
