// Package builtins is the one list of the appliance's compartments: each
// blank import runs a compartment's declaration (manifest.Register). To add
// a compartment, give it a declaration package beside its code and add one
// line here.
package builtins

import (
	_ "github.com/e2sgate/e2sgate/compartments/keyhandler/compartment"
	_ "github.com/e2sgate/e2sgate/compartments/payment/compartment"
	_ "github.com/e2sgate/e2sgate/compartments/purchasing/compartment"
	_ "github.com/e2sgate/e2sgate/inside/compartment"
	_ "github.com/e2sgate/e2sgate/outside/compartment"
)
