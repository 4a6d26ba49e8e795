package protocol

import (
	"encoding/json"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// JSON is a response with a JSON body.
func JSON(status int, v any) *callpb.Response {
	b, err := json.Marshal(v)
	if err != nil {
		return Error(500, "internal", "cannot encode response")
	}
	return &callpb.Response{Status: int32(status), Headers: map[string]string{"Content-Type": "application/json"}, Body: b}
}

// Error is an error response: a code the client can act on and a short
// text; inner error text never goes here.
func Error(status int, code, msg string) *callpb.Response {
	b, _ := json.Marshal(map[string]string{"error": code, "message": msg})
	return &callpb.Response{Status: int32(status), Headers: map[string]string{"Content-Type": "application/json"}, Body: b, Reason: code}
}

// ProvenUser is the reserved answer header in which a compartment that
// proves identity (its manifest's ProvesIdentity) names the person whose
// proof it checked for this call ("buyer:<fingerprint>"). The gate agent
// removes it from every answer before the answer goes on, and records it
// as the call's user only from such a compartment; a call's own user is a
// claim unless its caller proves identity.
const ProvenUser = "E2s-Proven-User"
