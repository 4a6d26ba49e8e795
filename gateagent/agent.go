// Package gateagent is the trusted relay between compartments (docs/ARCHITECTURE.md):
// for each call it looks the script up in the registry, asks the policy,
// runs the registration's filters, forwards to the target compartment and
// writes one audit record — in that order, top to bottom in Forward. It
// never trusts a compartment's claim about itself: the caller is the
// listener the call arrived on.
package gateagent

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/filters"
	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// Auditor takes decision records; Append returns once a record is durable.
type Auditor interface {
	Append(auditlog.Record) error
}

// PolicySet is the registry and policy in force, swapped as one.
type PolicySet struct {
	Registry *Registry
	Policy   *Policy
}

// activeSet is the policy set in force with the decision table compiled
// for it (table.go): swapped together, so a call never meets one set's
// table and another's policy.
type activeSet struct {
	*PolicySet
	table *decisionTable
}

// Agent decides and forwards calls.
type Agent struct {
	log    *slog.Logger
	audit  Auditor
	labels map[string]string // compartment → label, from the supervisor's config
	set    atomic.Pointer[activeSet]
	limits atomic.Pointer[limiter] // each caller's budget (limiter.go)
	// provers are the compartments that may prove identity (their
	// manifests' ProvesIdentity): only their word names a call's user.
	provers map[string]bool
	// compiling counts decision tables being compiled (tests wait on it).
	compiling sync.WaitGroup

	mu      sync.RWMutex
	targets map[string]protocol.Compartment
}

// New returns an agent enforcing set. labels gives every compartment's label.
func New(log *slog.Logger, audit Auditor, labels map[string]string, set *PolicySet) *Agent {
	a := &Agent{log: log, audit: audit, labels: labels, targets: map[string]protocol.Compartment{}}
	a.activate(set)
	a.SetLimits(DefaultLimits)
	return a
}

// ProveIdentity names the compartments whose word about a person the gate
// takes (set before serving): their answers' protocol.ProvenUser and the
// user of the calls they make. Every other caller's user is a claim.
func (a *Agent) ProveIdentity(names ...string) {
	a.provers = map[string]bool{}
	for _, n := range names {
		a.provers[n] = true
	}
}

// SetLimits gives every caller a fresh budget under lim (zero fields take
// DefaultLimits'); refusals not yet recorded under the old ones are written.
func (a *Agent) SetLimits(lim Limits) {
	l := newLimiter(a.log, a.audit, lim, func(script string) float64 {
		if reg := a.set.Load().Registry.Lookup(script); reg != nil {
			return reg.MaxRate
		}
		return 0
	})
	if old := a.limits.Swap(l); old != nil {
		old.flush()
	}
}

// FlushLimits writes the refusals the limiter has counted but not yet
// recorded (at shutdown).
func (a *Agent) FlushLimits() { a.limits.Load().flush() }

// SetPolicy replaces the registry and policy atomically: a call is decided
// wholly by the old set or wholly by the new one (its decision table
// follows when compiled; until then the new set's full query decides).
func (a *Agent) SetPolicy(set *PolicySet) { a.activate(set) }

// WaitCompiled waits for the decision tables being compiled (benchmarks
// and tests measure the agent as it runs once its table is in place).
func (a *Agent) WaitCompiled() { a.compiling.Wait() }

// activate makes set the one in force at once, deciding every call by the
// full query, and compiles its decision table in the background; the table
// is installed only while set is still in force (a later activation wins).
func (a *Agent) activate(set *PolicySet) {
	cur := &activeSet{PolicySet: set}
	a.set.Store(cur)
	if set.Policy == nil {
		return
	}
	a.compiling.Add(1)
	go func() {
		defer a.compiling.Done()
		start := time.Now()
		t, err := set.Policy.compileTable(context.Background(), set.Registry, a.labels)
		if err != nil { // only a cancelled context; every call keeps the full query
			a.log.Error("decision table not compiled; every call is decided by the full policy query", "error", err)
			return
		}
		if !a.set.CompareAndSwap(cur, &activeSet{PolicySet: set, table: t}) {
			return // another set was activated meanwhile
		}
		a.log.Info("decision table compiled", "entries", len(t.entries), "per_call", t.dynamic, "took", time.Since(start).Round(time.Millisecond))
	}()
}

// Attach makes name reachable as a target (after the supervisor started it).
func (a *Agent) Attach(name string, c protocol.Compartment) {
	a.mu.Lock()
	a.targets[name] = c
	a.mu.Unlock()
}

// Detach makes name unreachable (it died or is restarting).
func (a *Agent) Detach(name string) {
	a.mu.Lock()
	delete(a.targets, name)
	a.mu.Unlock()
}

func (a *Agent) target(name string) protocol.Compartment {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.targets[name]
}

// Forward decides call from caller and, if allowed, forwards it to its
// target and returns the answer. It takes call over (the gate names it and
// passes it on without a copy); the caller must not use it afterwards. Every outcome is audited; if the audit
// record cannot be written the caller gets 503, never an unaudited answer.
func (a *Agent) Forward(ctx context.Context, caller string, call *callpb.Call) *callpb.Response {
	start := time.Now()
	call.Caller = caller // the connection says who calls, never the call
	// The gate names the call: a caller's own id is kept only as clipped
	// detail, so no caller can make its call look like another's record.
	claimed := clip(call.ReqId, maxReqID)
	call.ReqId = newReqID()
	// 0. The caller's budget: a call over it is answered 429 at once and
	// recorded in aggregate, one record per caller and interval.
	release, refused := a.limits.Load().admit(caller, call)
	if refused != nil {
		return refused
	}
	defer release()
	rec := auditlog.Record{Time: start.UTC(), ReqID: call.ReqId, CallerReqID: claimed, Caller: caller,
		Script: clip(call.Script, maxScript), User: clip(call.User, maxUser)}
	var resp *callpb.Response
	field := oversized(call)
	if !a.provers[caller] {
		// A caller that cannot prove who the person is only claims it: the
		// claim is detail, the policy and the target see no user.
		rec.User, rec.ClaimedUser = "", rec.User
		call.User = ""
	}
	if field != "" {
		rec.Detail = field
		resp = deny(call, 400, "gate.field_too_long", "a field of the call is longer than the gateway accepts")
	} else {
		resp = a.decideAndForward(ctx, call, &rec)
	}
	rec.Detail = clip(rec.Detail, maxDetail)
	rec.Status = int(resp.Status)
	rec.LatencyUS = time.Since(start).Microseconds()
	if rec.Decision == "" {
		rec.Decision = "deny"
	}
	if resp.Reason != "" { // the gate's own answer names why
		rec.Reason = resp.Reason
	}
	if err := a.audit.Append(rec); err != nil {
		if errors.Is(err, auditlog.ErrFull) {
			a.log.Error("audit log full; refusing calls until an operator archives it or frees space (docs/OPERATIONS.md)", "req_id", call.ReqId, "error", err)
			return deny(call, 503, "gate.audit_full", "the gateway's audit log is full; it refuses calls until an operator makes room")
		}
		a.log.Error("audit log unwritable; refusing calls", "req_id", call.ReqId, "script", rec.Script, "error", err)
		return deny(call, 503, "gate.audit_unavailable", "the gateway cannot record decisions and refuses calls until it can")
	}
	a.log.Debug("call", "req_id", call.ReqId, "compartment", caller, "script", rec.Script, "decision", rec.Decision, "reason", rec.Reason)
	return resp
}

func (a *Agent) decideAndForward(ctx context.Context, call *callpb.Call, rec *auditlog.Record) *callpb.Response {
	reg, d, denied := a.decide(ctx, call, rec)
	if denied != nil {
		return denied
	}

	// 4. Forward. From here on the gate has allowed the call; what follows
	// is the target's answer or its failure.
	rec.Decision = "allow"
	rec.Reason = d.Reason
	t := a.target(reg.Target)
	if t == nil {
		return deny(call, 503, "gate.target_unavailable", "the service is restarting; try again shortly")
	}
	// The call goes on as it is, named by the handler: no copy of its
	// body and meta (the record already holds the script it came under;
	// Forward owns the call it is given).
	call.Script = reg.Handler
	fctx, cancel := context.WithTimeout(ctx, reg.Timeout)
	defer cancel()
	resp, err := t.Handle(fctx, call)
	if err != nil {
		rec.Detail = err.Error()
		return deny(call, 502, "gate.target_error", "the service failed to answer")
	}
	if resp.Status == 0 {
		resp.Status = 200
	}

	// 5. Response filters: the registration's and the policy's obligations.
	for _, rf := range reg.resp {
		if rf.f(resp) {
			rec.Filters = append(rec.Filters, rf.name)
		}
	}
	for _, name := range d.ResponseFilters {
		if f, ok := filters.LookupResponse(name); ok && f(resp) {
			rec.Filters = append(rec.Filters, name)
		}
	}
	// A compartment's reason is recorded when it is a reason id; it never
	// crosses back to the caller. Nor does the person it proved, which is
	// the call's user if the target may prove identity.
	if reasonID.MatchString(resp.Reason) {
		rec.TargetReason = resp.Reason
	}
	resp.Reason = ""
	for k, v := range resp.Headers {
		if strings.EqualFold(k, protocol.ProvenUser) {
			delete(resp.Headers, k)
			if a.provers[reg.Target] && v != "" {
				rec.User = clip(v, maxUser)
			}
		}
	}
	return resp
}

// decide is the gate's decision without forwarding: registry, policy,
// filters. A non-nil response is the denial.
func (a *Agent) decide(ctx context.Context, call *callpb.Call, rec *auditlog.Record) (*Registration, Decision, *callpb.Response) {
	set := a.set.Load()

	// 1. Registered?
	reg := set.Registry.Lookup(call.Script)
	if reg == nil {
		return nil, Decision{}, deny(call, 404, "reg.unknown_script", "no such script")
	}
	rec.Target = reg.Target

	// 2. Policy.
	d, err := a.policyDecision(ctx, set, reg, call)
	if err != nil {
		rec.Detail = err.Error()
		return nil, d, deny(call, 403, "pol.error", "denied")
	}
	if !d.Allow {
		return nil, d, deny(call, 403, d.Reason, "denied by policy")
	}

	// 3. Filters of the registration.
	for _, f := range reg.chain {
		if den := f(call); den != nil {
			return nil, d, deny(call, den.Status, den.Reason, den.Msg)
		}
	}
	return reg, d, nil
}

// policyDecision is the policy's answer for call to reg: the activation's
// decision table where the decision depends on nothing else (table.go),
// the full query otherwise.
func (a *Agent) policyDecision(ctx context.Context, set *activeSet, reg *Registration, call *callpb.Call) (Decision, error) {
	if d, ok := set.table.lookup(call.Caller, call.Script, call.Method); ok {
		return d, nil
	}
	return set.Policy.Decide(ctx, PolicyInput{
		Caller: call.Caller, CallerLabel: a.labels[call.Caller],
		Target: reg.Target, TargetLabel: a.labels[reg.Target],
		Script: call.Script, Method: call.Method,
		Registration: policyReg{Callers: reg.Callers, Clearance: reg.Clearance, Roles: reg.Roles},
		User:         policyUser{Name: call.User},
	})
}

// Record audits an event reported by the supervisor (a kernel layer's
// denial, lowered confinement): the gate agent is the one audit writer.
func (a *Agent) Record(e Event) {
	rec := auditlog.Record{Time: time.Now().UTC(), ReqID: newReqID(), Caller: clip(e.Compartment, maxScript),
		Script: clip(e.Kind, maxScript), Decision: clip(e.Decision, maxMethod), Reason: clip(e.Reason, maxScript),
		Detail: clip(e.Detail, maxDetail), Event: cmp.Or(clip(e.Origin, maxMethod), "supervisor"), Count: max(e.Count, 0)}
	if err := a.audit.Append(rec); err != nil {
		a.log.Error("audit log unwritable", "compartment", e.Compartment, "event", e.Kind, "error", err)
	}
}

// QuotaWarning records that the audit log is nearly full (auditlog's
// OnQuota): the operator sees it in the log, the audit trail and the
// metrics (e2sgate_audit_events_total{reason="audit.quota_warning"}).
func (a *Agent) QuotaWarning(u auditlog.Usage) {
	a.Record(Event{Compartment: "gate", Kind: "gate/audit_quota", Decision: "warn", Reason: "audit.quota_warning", Origin: "gate",
		Detail: fmt.Sprintf("the audit log is %d%% full (%d of %d bytes, by its %s); at 100%% the gate refuses calls", u.Percent, u.Used, u.Limit, u.By)})
}

// deny answers with a status, a reason id the operator can look up and a
// short text; nothing of the inner error crosses the boundary.
func deny(call *callpb.Call, status int, reason, msg string) *callpb.Response {
	b, _ := json.Marshal(denial{reason, msg, call.ReqId})
	return &callpb.Response{
		Status:  int32(status),
		Headers: map[string]string{"Content-Type": "application/json", "X-E2S-Reason": reason},
		Body:    b,
		Reason:  reason,
	}
}

// denial is the body of a gate's own answer.
type denial struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	ReqID   string `json:"req_id"`
}

func newReqID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}
