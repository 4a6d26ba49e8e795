package gateagent

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// Bounds on what a caller puts in a call. A call is checked against them
// before anything in it is matched (registry, policy) or recorded: what the
// audit log holds of a caller's words is clipped, so one call cannot write
// more than a few KiB of audit however large its fields (JSON escapes '<'
// as six bytes).
const (
	maxScript   = 128      // "<compartment>/<script>"
	maxMethod   = 16       // an HTTP method
	maxUser     = 512      // a user name or certificate subject
	maxReqID    = 64       // a caller's own request id, kept as detail
	maxPathInfo = 4 << 10  // the CGI PATH_INFO
	maxQuery    = 16 << 10 // the CGI QUERY_STRING
	maxMetaKeys = 128      // meta-variables in one call
	maxMeta     = 128 << 10
	maxDetail   = 1 << 10 // what an audit record says beyond its fields
	// envelope is what a call may carry besides its body, for the
	// transport's per-caller message cap.
	envelope = 256 << 10
)

// oversized names the first field of c over its bound ("" if none).
func oversized(c *callpb.Call) string {
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{
		{"script", c.GetScript(), maxScript},
		{"method", c.GetMethod(), maxMethod},
		{"user", c.GetUser(), maxUser},
		{"path_info", c.GetPathInfo(), maxPathInfo},
		{"query", c.GetQuery(), maxQuery},
	} {
		if len(f.v) > f.max {
			return fmt.Sprintf("%s of %d bytes exceeds %d", f.name, len(f.v), f.max)
		}
	}
	if len(c.GetMeta()) > maxMetaKeys {
		return fmt.Sprintf("%d meta-variables exceed %d", len(c.GetMeta()), maxMetaKeys)
	}
	n := 0
	for k, v := range c.GetMeta() {
		n += len(k) + len(v)
	}
	if n > maxMeta {
		return fmt.Sprintf("meta-variables of %d bytes exceed %d", n, maxMeta)
	}
	return ""
}

// clip shortens s to at most n bytes of valid UTF-8, marking a cut.
func clip(s string, n int) string {
	if len(s) <= n && utf8.ValidString(s) {
		return s
	}
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "") + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// reasonID is the shape of a reason id ("purchasing.signature_required");
// a target's answer is recorded with its reason only in that shape.
var reasonID = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}(\.[a-z0-9_]{1,48}){0,2}$`)
