// Package site is the embedded default static content of the web front
// (the storefront). The supervisor writes it out as a root-owned,
// read-only tree when the configuration names no static directory.
package site

import "embed"

// Files is the storefront.
//
//go:embed static
var Files embed.FS
