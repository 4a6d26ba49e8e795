package supervisor

import (
	"testing"

	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
)

// The configuration's default gate limits are the gate agent's own: the
// appliance on its embedded defaults and a gate agent told nothing agree.
func TestGateLimitsDefaults(t *testing.T) {
	c, d := config.Default().GateLimits, gateagent.DefaultLimits
	if c.Concurrent != d.Concurrent || c.PerSecond != d.PerSecond || c.Burst != d.Burst || c.ReportInterval != d.ReportInterval {
		t.Fatalf("config's gate_limits %+v differ from gateagent.DefaultLimits %+v", c, d)
	}
}
