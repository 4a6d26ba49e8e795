// Package compartment declares the inside compartment (the back-office
// connector and the SOCKS filter into the internal network) without linking
// its code.
package compartment

import "github.com/e2sgate/e2sgate/compartments/manifest"

func init() {
	manifest.Register(&manifest.Manifest{
		Name:       "inside",
		Order:      30,
		UID:        64005,
		GID:        64005,
		Label:      "confidential:internal",
		Limits:     manifest.Limits{MemoryMB: 128, Pids: 64, CPUPercent: 50},
		Section:    "inside",
		Network:    manifest.NetVeth,
		Mounts:     []manifest.Mount{manifest.MountSpool},
		Sockets:    []manifest.Socket{manifest.SocketSocks},
		Code:       []string{"inside"},
		MayNotLink: []string{"gateagent"},
		Events: []manifest.EventKind{
			// The SOCKS filter's decision on every connection (filters/socks).
			{Kind: "socks.connect", Reasons: []string{"socks.allowed", "socks.not_allowlisted",
				"socks.unsupported_request", "socks.dial_failed", "socks.protocol_error"}},
			// A back-office confirmation inside stopped retrying.
			{Kind: "backoffice.confirmation", Reasons: []string{"inside.confirmation_given_up"}},
		},
	})
}
