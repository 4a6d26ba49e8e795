package inside

import (
	"testing"

	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/filters/socks"
	_ "github.com/e2sgate/e2sgate/inside/compartment"
)

// Every event inside reports is declared in its manifest; the supervisor
// relays no other.
func TestEventsDeclared(t *testing.T) {
	m := manifest.Lookup("inside")
	for _, e := range []Event{
		{Kind: "socks.connect", Reason: socks.ReasonAllowed},
		{Kind: "socks.connect", Reason: socks.ReasonNotAllowed},
		{Kind: "socks.connect", Reason: socks.ReasonUnsupported},
		{Kind: "socks.connect", Reason: socks.ReasonDialFailed},
		{Kind: "socks.connect", Reason: socks.ReasonProtocol},
		{Kind: "backoffice.confirmation", Reason: "inside.confirmation_given_up"},
	} {
		if !m.AllowsEvent(e.Kind, e.Reason) {
			t.Errorf("inside reports %s %s but does not declare it", e.Kind, e.Reason)
		}
	}
}
