package protocol

import "errors"

// ErrNotACompartment: the program was started outside the supervisor.
var ErrNotACompartment = errors.New("not started as a compartment")
