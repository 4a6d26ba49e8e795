package label

import "errors"

// ErrBadLabel: a label's text form does not parse.
var ErrBadLabel = errors.New("bad label")
