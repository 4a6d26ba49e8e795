package config

import (
	"errors"
	"testing"
)

// FuzzParse reads any configuration file: it is refused with ErrInvalid or
// yields a configuration that validates (and so, for one, has every
// compartment's section and positive limits).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"listen: 127.0.0.1:9443\n",
		"compartments:\n  payment:\n    memory_mb: 64\n",
		"gate_limits:\n  per_second: 50\n  burst: 60\n  report_interval: 2s\n",
		"internal_network:\n  allow: [10.77.0.10:8080]\n",
		"compartments:\n  payment: ~\n",
		"version: 1\nruntime: exec\nconfinement: lowered\naudit_quota_mb: 5\n",
		"outside:\n  max_body: 100\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		err := Parse(c, data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refused without ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed but does not validate: %v", err)
		}
		g := c.GateLimits
		if g.Concurrent < 1 || !(g.PerSecond > 0) || g.Burst < 1 || len(c.Compartments) == 0 {
			t.Fatalf("accepted %+v", c)
		}
	})
}
