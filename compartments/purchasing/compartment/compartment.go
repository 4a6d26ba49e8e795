// Package compartment declares the purchasing compartment without linking
// its code.
package compartment

import "github.com/e2sgate/e2sgate/compartments/manifest"

func init() {
	manifest.Register(&manifest.Manifest{
		Name:       "purchasing",
		Order:      40,
		UID:        64002,
		GID:        64002,
		Label:      "confidential:shop",
		Limits:     manifest.Limits{MemoryMB: 256, Pids: 128, CPUPercent: 100},
		Network:    manifest.NetLoopback,
		Code:       []string{"compartments/purchasing"},
		MayNotLink: []string{"gateagent", "internal/daemon/supervisor", "compartments/sandbox"},
		// It checks each buyer's request signature (auth.go) and names the
		// buyer to the gate; the gate records that, not outside's word.
		ProvesIdentity: true,
	})
}
