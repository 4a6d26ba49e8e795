package images

import "errors"

var (
	// ErrNotStatic: the compartment binary is dynamically linked; an image
	// holds no libc or loader, so it could not run.
	ErrNotStatic = errors.New("images: binary is not statically linked")
	// ErrBadName: a compartment name that is not a plain file name.
	ErrBadName = errors.New("images: invalid compartment name")
	// ErrNoCARoots: the host has no CA bundle to copy into the image.
	ErrNoCARoots = errors.New("images: no CA roots on the host")
)
