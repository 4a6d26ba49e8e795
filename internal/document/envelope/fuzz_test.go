package envelope_test

import (
	"bytes"
	"testing"

	"github.com/e2sgate/e2sgate/internal/document/envelope"
)

// FuzzOpen feeds arbitrary bytes to Unmarshal and Open. Nothing may panic,
// and anything that opens must be exactly a payload sealed by the test (a
// forged envelope that opens would mean the HMAC or GCM check is skipped).
func FuzzOpen(f *testing.F) {
	a, _ := testKeys(f)
	payloads := [][]byte{[]byte("seed one"), {}, bytes.Repeat([]byte{7}, 300)}
	for _, p := range payloads {
		env, err := envelope.SealPayload(p, &a.PublicKey)
		if err != nil {
			f.Fatal(err)
		}
		wire, err := envelope.Marshal(env)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x01, 'x'})
	f.Fuzz(func(t *testing.T, wire []byte) {
		env, err := envelope.Unmarshal(wire)
		if err != nil {
			return
		}
		_ = envelope.StateOf(env)
		c, err := envelope.Open(env, a)
		if err != nil {
			return
		}
		for _, p := range payloads {
			if bytes.Equal(c.Payload, p) {
				return
			}
		}
		t.Fatalf("forged envelope opened to %q", c.Payload)
	})
}
