//go:build !(linux && amd64)

package gateagent

import "fmt"

// filterSelf: the gate agent's own filter is built for linux/amd64 only;
// elsewhere the sandbox's filter is all it has.
func filterSelf() error { return fmt.Errorf("%w: not built for this platform", ErrSeccomp) }

func seccompActive() bool { return false }
