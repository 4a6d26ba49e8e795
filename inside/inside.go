// Package inside is the one compartment attached to the internal network:
// the back-office connector and the policy-controlled SOCKS filter
// (filters/socks) through which other compartments reach internal IT and
// the acquirer.
//
//	purchasing --inside/order--> [inside] --spool/orders/<id>.json--> back office
//	back office --spool/confirmations/<id>.json--> [inside] (polls)
//	[inside] --purchasing/delivered (through the gate)--> purchasing
//	payment --unix socket, SOCKS5 CONNECT--> [inside] --TCP--> acquirer (allowlist)
package inside

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/filters/socks"
	"github.com/e2sgate/e2sgate/internal/durable"
)

// Config is inside's section, handed to it by the supervisor as JSON.
type Config struct {
	// Socks lists, in order, the callers whose SOCKS listeners the
	// supervisor passed as fd 3, 4, ...; Allow is each caller's allowlist.
	Socks []string            `json:"socks"`
	Allow map[string][]string `json:"allow"`
	// Spool is the directory shared with the back office; default
	// <data dir>/spool.
	Spool  string `json:"spool"`
	PollMS int64  `json:"poll_ms"` // confirmation poll interval; default 500
}

// Caller reaches other compartments (through the gate agent).
type Caller interface {
	Call(ctx context.Context, c *callpb.Call) (*callpb.Response, error)
}

// Event is something inside reports for the audit log; the gate agent (the
// one audit writer) records it, stamped with this compartment's name by the
// supervisor.
type Event struct {
	Kind     string `json:"kind"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	Detail   string `json:"detail"`
}

// Handler serves the inside compartment's scripts.
type Handler struct {
	// Audit, when set, receives what inside reports for the audit log
	// (a confirmation given up).
	Audit func(Event)

	log     *slog.Logger
	gate    Caller
	spool   string
	poll    time.Duration
	now     func() time.Time
	pending map[string]*pending // confirmations tried and not finished; Watch's goroutine only
}

// New returns the inside handler; spool defaults to dataDir/spool.
func New(log *slog.Logger, gate Caller, cfg Config, dataDir string) (*Handler, error) {
	spool := cfg.Spool
	if spool == "" {
		spool = filepath.Join(dataDir, "spool")
	}
	for _, d := range []string{"orders", "confirmations", "done"} {
		if err := os.MkdirAll(filepath.Join(spool, d), 0o755); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	poll := time.Duration(cfg.PollMS) * time.Millisecond
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	return &Handler{log: log, gate: gate, spool: spool, poll: poll, now: time.Now, pending: map[string]*pending{}}, nil
}

// Handle dispatches on the registered handler name.
func (h *Handler) Handle(_ context.Context, c *callpb.Call) (*callpb.Response, error) {
	switch c.GetScript() {
	case "health":
		return protocol.JSON(200, map[string]string{"compartment": "inside", "status": "ok"}), nil
	case "order":
		return h.order(c), nil
	}
	return protocol.Error(404, "no_handler", "no such handler"), nil
}

var orderIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// order hands an accepted order to the back office: written durably to the
// spool before the answer, so an acknowledged hand-over is never lost. A
// repeated hand-over of the same order is accepted and changes nothing.
func (h *Handler) order(c *callpb.Call) *callpb.Response {
	var o struct {
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(c.GetBody(), &o); err != nil || !orderIDRE.MatchString(o.OrderID) {
		return protocol.Error(400, "bad_order", `the order is a JSON object with an "order_id"`)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, c.GetBody()); err != nil {
		return protocol.Error(400, "bad_order", "the order is not JSON")
	}
	p := filepath.Join(h.spool, "orders", o.OrderID+".json")
	if _, err := os.Stat(p); err == nil {
		return protocol.JSON(200, map[string]any{"order_id": o.OrderID, "spooled": true, "repeated": true})
	}
	if err := durable.WriteFile(p, compact.Bytes(), 0o644); err != nil {
		h.log.Error("spool order", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(503, "spool_failed", "the order was not handed to the back office; try again")
	}
	h.log.Info("order spooled", "req_id", c.GetReqId(), "order_id", o.OrderID)
	return protocol.JSON(201, map[string]any{"order_id": o.OrderID, "spooled": true})
}

// Confirmation is what the back office writes when it has delivered.
type Confirmation struct {
	OrderID     string `json:"order_id"`
	DeliveredAt string `json:"delivered_at"`
	Reference   string `json:"reference,omitempty"`
}

// Retry bounds for one confirmation: after a failure it waits twice as
// long as before (from the poll interval up to maxRetryWait); after
// maxAttempts failures it is left in the spool, reported once as an error
// and an audit event, and not tried again until inside restarts.
const (
	maxAttempts  = 8
	maxRetryWait = 5 * time.Minute
)

// pending is what inside remembers of a confirmation it could not finish.
type pending struct {
	attempts  int
	next      time.Time
	delivered bool // purchasing accepted it; only the move to done/ is left
	gaveUp    bool
}

// Watch polls the spool for delivery confirmations until ctx ends and, for
// each, calls purchasing/delivered through the gate; a confirmation is
// moved to done/ only when purchasing accepted it, so none is lost.
func (h *Handler) Watch(ctx context.Context) {
	t := time.NewTicker(h.poll)
	defer t.Stop()
	for {
		h.Confirmations(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Confirmations handles the confirmations there are now; it returns how many
// purchasing accepted and were moved to done/. A confirmation that fails is
// tried again later with a growing wait, and given up after maxAttempts.
func (h *Handler) Confirmations(ctx context.Context) int {
	dir := filepath.Join(h.spool, "confirmations")
	entries, err := os.ReadDir(dir)
	if err != nil {
		h.log.Error("read confirmations", "error", err)
		return 0
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	h.forget(names)
	n := 0
	now := h.now()
	for _, name := range names {
		p := h.pending[name]
		if p != nil && (p.gaveUp || now.Before(p.next)) {
			continue
		}
		if h.confirm(ctx, name, p) {
			delete(h.pending, name)
			n++
		}
	}
	return n
}

// confirm hands one confirmation to purchasing (unless it already took it)
// and moves it to done/; it reports whether both happened.
func (h *Handler) confirm(ctx context.Context, name string, p *pending) bool {
	dir := filepath.Join(h.spool, "confirmations")
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return false // gone meanwhile, or not yet readable
	}
	var conf Confirmation
	if err := json.Unmarshal(b, &conf); err != nil || !orderIDRE.MatchString(conf.OrderID) || conf.OrderID+".json" != name {
		if err := h.move(name, name+".bad"); err != nil {
			h.failed(name, p, false, "move_failed", fmt.Sprintf("move bad confirmation %s aside: %v", name, err))
			return false
		}
		h.log.Warn("bad confirmation; moved aside", "file", name)
		return false
	}
	if p == nil || !p.delivered {
		body, _ := json.Marshal(conf)
		resp, err := h.gate.Call(ctx, &callpb.Call{Script: "purchasing/delivered", Method: "POST", Body: body,
			Meta: map[string]string{"CONTENT_TYPE": "application/json"}})
		switch {
		case err != nil:
			h.failed(name, p, false, "call_failed", fmt.Sprintf("purchasing/delivered for order %s: %v", conf.OrderID, err))
			return false
		case resp.GetStatus() >= 300:
			h.failed(name, p, false, resp.GetReason(), fmt.Sprintf("purchasing refused the delivery of order %s: %d %s", conf.OrderID, resp.GetStatus(), resp.GetReason()))
			return false
		}
		h.log.Info("delivery confirmed to purchasing", "order_id", conf.OrderID)
	}
	if err := h.move(name, name); err != nil {
		h.failed(name, p, true, "move_failed", fmt.Sprintf("move confirmation of order %s to done: %v", conf.OrderID, err))
		return false
	}
	return true
}

// move renames confirmations/<from> to done/<to>. Where the kernel refuses
// a rename across the two directories (EXDEV: a Landlock ruleset without
// the refer right, or another file system), it copies durably and removes
// the original, so a confirmation is never lost either way.
func (h *Handler) move(from, to string) error {
	src, dst := filepath.Join(h.spool, "confirmations", from), filepath.Join(h.spool, "done", to)
	err := os.Rename(src, dst)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(dst, b, 0o644); err != nil {
		return err
	}
	if err := os.Remove(src); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// failed records a failed attempt at confirmation name: the next try waits
// twice as long as the last; after maxAttempts inside stops trying, says so
// once in the log and the audit trail, and leaves the file for an operator.
func (h *Handler) failed(name string, p *pending, delivered bool, reason, detail string) {
	if p == nil {
		p = &pending{}
		h.pending[name] = p
	}
	p.delivered = p.delivered || delivered
	p.attempts++
	if p.attempts >= maxAttempts {
		p.gaveUp = true
		h.log.Error("confirmation given up after repeated failures; fix the cause, then restart inside to try again",
			"file", name, "attempts", p.attempts, "reason", reason, "detail", detail)
		if h.Audit != nil {
			h.Audit(Event{Kind: "backoffice.confirmation", Decision: "error", Reason: "inside.confirmation_given_up", Detail: detail})
		}
		return
	}
	wait := min(h.poll<<p.attempts, maxRetryWait)
	p.next = h.now().Add(wait)
	h.log.Warn("confirmation not finished; will retry", "file", name, "attempt", p.attempts, "retry_in", wait.String(), "reason", reason, "detail", detail)
}

// forget drops what inside remembers of confirmations no longer pending.
func (h *Handler) forget(names []string) {
	for name := range h.pending {
		if _, ok := slices.BinarySearch(names, name); !ok {
			delete(h.pending, name)
		}
	}
}

// ServeSocks runs one SOCKS filter per listener: listeners[i] belongs to
// cfg.Socks[i]. Every connection is reported to audit.
func ServeSocks(log *slog.Logger, cfg Config, listeners []net.Listener, audit func(Event)) error {
	if len(listeners) != len(cfg.Socks) {
		return fmt.Errorf("socks: %d listeners for %d callers", len(listeners), len(cfg.Socks))
	}
	for i, caller := range cfg.Socks {
		var allow []netip.AddrPort
		for _, a := range cfg.Allow[caller] {
			ap, err := netip.ParseAddrPort(a)
			if err != nil {
				return fmt.Errorf("socks allowlist of %s: %w", caller, err)
			}
			allow = append(allow, ap)
		}
		f := &socks.Filter{Caller: caller, Allow: allow, Log: log, Audit: func(e socks.Event) {
			audit(Event{Kind: "socks.connect", Decision: e.Decision, Reason: e.Reason, Detail: e.String()})
		}}
		go func() {
			if err := f.Serve(listeners[i]); err != nil {
				log.Error("socks filter stopped", "caller", caller, "error", err)
			}
		}()
		log.Info("socks filter serving", "caller", caller, "allow", cfg.Allow[caller])
	}
	return nil
}
