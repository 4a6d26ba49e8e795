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
	"sort"
	"strings"
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
	log   *slog.Logger
	gate  Caller
	spool string
	poll  time.Duration
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
	return &Handler{log: log, gate: gate, spool: spool, poll: poll}, nil
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
// purchasing accepted.
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
	n := 0
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		var conf Confirmation
		if err := json.Unmarshal(b, &conf); err != nil || !orderIDRE.MatchString(conf.OrderID) || conf.OrderID+".json" != name {
			h.log.Warn("bad confirmation; moved aside", "file", name)
			os.Rename(filepath.Join(dir, name), filepath.Join(h.spool, "done", name+".bad"))
			continue
		}
		body, _ := json.Marshal(conf)
		resp, err := h.gate.Call(ctx, &callpb.Call{Script: "purchasing/delivered", Method: "POST", Body: body,
			Meta: map[string]string{"CONTENT_TYPE": "application/json"}})
		if err != nil {
			h.log.Warn("delivered call failed; will retry", "order_id", conf.OrderID, "error", err)
			continue
		}
		if resp.GetStatus() >= 300 {
			h.log.Warn("purchasing did not accept the delivery; will retry", "order_id", conf.OrderID, "status", resp.GetStatus(), "reason", resp.GetReason())
			continue
		}
		if err := os.Rename(filepath.Join(dir, name), filepath.Join(h.spool, "done", name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			h.log.Error("move confirmation", "error", err)
			continue
		}
		h.log.Info("delivery confirmed to purchasing", "order_id", conf.OrderID)
		n++
	}
	return n
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
