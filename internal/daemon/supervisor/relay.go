package supervisor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/gateagent"
)

// clip shortens s to at most n bytes, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// What a compartment may put in the audit log through its stdout is
// bounded three ways: only the event kinds and reasons its manifest
// declares (inside: its SOCKS decisions and a confirmation given up); at
// most eventRate a second (eventBurst at once), the rest counted and
// reported as one sup.events_dropped record; and, while no gate agent
// runs, at most maxPending queued events of any origin (the rest counted
// likewise).
const (
	eventRate  = 100 // events a second, per compartment
	eventBurst = 500
	maxPending = 1000
)

// bucket is a token bucket; the caller passes the time.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(rate, burst float64) *bucket { return &bucket{rate: rate, burst: burst, tokens: burst} }

func (b *bucket) allow(now time.Time) bool {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// relayOutput copies what a compartment prints after its handshake to our
// log stream, except event lines ({"e2s_event": {...}}), which go to the
// audit log through the gate agent, stamped with the compartment's name
// (never the compartment's claim), kind "<name>/<kind>" and origin
// "compartment" (the record's "event" field, which a gate decision never
// has). An event its manifest does not declare is refused: recorded as
// sup.event_refused, never as the compartment's claim.
func (s *Supervisor) relayOutput(name string, r io.Reader) {
	m := manifest.Lookup(name)
	limit := newBucket(eventRate, eventBurst)
	dropped := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Bytes()
		var msg struct {
			Event *gateagent.Event `json:"e2s_event"`
		}
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &msg) != nil || msg.Event == nil {
			os.Stderr.Write(append(line, '\n'))
			continue
		}
		if !limit.allow(s.clock()) {
			dropped++
			continue
		}
		if dropped > 0 {
			s.audit(droppedEvent(name, dropped, "its rate limit"))
			dropped = 0
		}
		s.audit(relayedEvent(m, name, *msg.Event))
	}
	if dropped > 0 {
		s.audit(droppedEvent(name, dropped, "its rate limit"))
	}
	io.Copy(os.Stderr, r)
}

// relayedEvent is what the audit log gets for an event line of compartment
// name: the event, bounded and stamped, if its manifest declares it; else
// a refusal.
func relayedEvent(m *manifest.Manifest, name string, e gateagent.Event) gateagent.Event {
	kind, reason := clip(e.Kind, 64), clip(e.Reason, 64)
	if m == nil || !m.AllowsEvent(e.Kind, e.Reason) {
		return gateagent.Event{Compartment: name, Kind: "supervisor/event", Decision: "deny", Reason: "sup.event_refused",
			Detail: fmt.Sprintf("%s printed an event it does not declare: kind %q reason %q", name, kind, reason), Origin: "supervisor"}
	}
	d := "deny"
	if e.Decision == "allow" {
		d = "allow"
	}
	return gateagent.Event{Compartment: name, Kind: name + "/" + kind, Decision: d, Reason: reason,
		Detail: clip(e.Detail, 1024), Origin: "compartment"}
}

func droppedEvent(name string, n int, why string) gateagent.Event {
	return gateagent.Event{Compartment: name, Kind: "supervisor/event", Decision: "deny", Reason: "sup.events_dropped",
		Detail: fmt.Sprintf("%d events of %s were not recorded: over %s", n, name, why), Origin: "supervisor"}
}
