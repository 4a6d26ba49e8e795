// Package compartment declares the payment compartment without linking its
// code. Payment reaches the acquirer only through the inside compartment's
// SOCKS filter.
package compartment

import "github.com/e2sgate/e2sgate/compartments/manifest"

func init() {
	manifest.Register(&manifest.Manifest{
		Name:       "payment",
		Order:      20,
		UID:        64003,
		GID:        64003,
		Label:      "confidential:pay",
		Limits:     manifest.Limits{MemoryMB: 128, Pids: 64, CPUPercent: 50},
		Section:    "payment",
		Network:    manifest.NetLoopback,
		SocksVia:   "inside",
		Code:       []string{"compartments/payment", "compartments/payment/iso"},
		MayNotLink: []string{"gateagent", "internal/daemon/supervisor"},
	})
}
