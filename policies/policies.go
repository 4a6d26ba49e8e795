// Package policies holds the embedded default policy set: the Rego policy
// and its tests, the call registry and the reason ids. The supervisor uses
// these unless the config names a policy directory.
package policies

import "embed"

// Default is the embedded policy set.
//
//go:embed *.rego registry.yaml reasons.yaml roles.yaml admin-reasons.yaml
var Default embed.FS
