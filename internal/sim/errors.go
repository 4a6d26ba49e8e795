package sim

import "errors"

var (
	// ErrNoPrograms: the acquirer or backoffice program is not in the bin
	// directory.
	ErrNoPrograms = errors.New("no acquirer and backoffice programs beside e2sgated (go build -o bin/ ./cmd/acquirer ./cmd/backoffice)")
	// ErrNotIPv4: the simulated acquirer's address derives from an IPv4
	// inside address.
	ErrNotIPv4 = errors.New("inside_address is not IPv4")
)
