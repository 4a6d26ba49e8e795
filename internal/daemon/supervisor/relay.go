package supervisor

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"strings"

	"github.com/e2sgate/e2sgate/gateagent"
)

// clip shortens s to at most n bytes, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// relayOutput copies what a compartment prints after its handshake to our
// log stream, except event lines ({"e2s_event": {...}}), which go to the
// audit log through the gate agent, stamped with the compartment's name
// (never the compartment's claim) and kind "<name>/<kind>".
func (s *Supervisor) relayOutput(name string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Bytes()
		var m struct {
			Event *gateagent.Event `json:"e2s_event"`
		}
		if len(line) > 0 && line[0] == '{' && json.Unmarshal(line, &m) == nil && m.Event != nil {
			e := *m.Event
			// A compartment's words are bounded before they reach the
			// audit log: a compromised one cannot flood it with one event.
			e.Kind, e.Reason, e.Detail = clip(e.Kind, 64), clip(e.Reason, 64), clip(e.Detail, 1024)
			e.Compartment, e.Kind = name, name+"/"+e.Kind
			if e.Decision != "allow" {
				e.Decision = "deny"
			}
			s.audit(e)
			continue
		}
		os.Stderr.Write(append(line, '\n'))
	}
	io.Copy(os.Stderr, r)
}
