// Package site is the embedded default static content of the web front
// (the storefront). The supervisor writes it out as a root-owned,
// read-only tree when the configuration names no static directory.
package site

// static/shop.js is generated from web/ (PKI.js + asn1js, bundled by
// esbuild; exact versions in web/package-lock.json) and committed, so that
// building needs no npm. "make generate" rebuilds it where npm is installed.
//go:generate sh -c "if [ -z \"$E2S_NO_NPM\" ] && command -v npm >/dev/null; then cd web && npm ci --no-audit --no-fund && npm run build; else echo 'npm not used (E2S_NO_NPM set or npm missing): keeping the committed static/shop.js'; fi"

import "embed"

// Files is the storefront.
//
//go:embed static
var Files embed.FS
