// Package compartment declares the keyhandler compartment (the merchant's
// signing and decryption keys) without linking its code.
package compartment

import "github.com/e2sgate/e2sgate/compartments/manifest"

func init() {
	manifest.Register(&manifest.Manifest{
		Name:       "keyhandler",
		Order:      10,
		UID:        64004,
		GID:        64004,
		Label:      "secret:keys,shop",
		Limits:     manifest.Limits{MemoryMB: 128, Pids: 64, CPUPercent: 50},
		Network:    manifest.NetLoopback,
		Code:       []string{"compartments/keyhandler"},
		MayNotLink: []string{"gateagent", "internal/daemon/supervisor"},
		Events: []manifest.EventKind{
			// A signing request its purpose's check refused
			// (compartments/keyhandler/purpose.go).
			{Kind: "sign", Reasons: []string{"keyhandler.not_a_document", "keyhandler.wrong_purpose",
				"keyhandler.malformed", "keyhandler.wrong_merchant", "keyhandler.amounts", "keyhandler.time",
				"keyhandler.not_an_acceptance", "keyhandler.wrong_buyer", "keyhandler.bad_recipient"}},
		},
	})
}
