package envelope_test

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/e2sgate/e2sgate/internal/document/envelope"
)

var benchSizes = []int{1 << 10, 64 << 10, 1 << 20, 16 << 20}

func BenchmarkSeal(b *testing.B) {
	a, _ := testKeys(b)
	for _, n := range benchSizes {
		payload := make([]byte, n)
		rand.Read(payload)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := envelope.SealPayload(payload, &a.PublicKey); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	a, _ := testKeys(b)
	for _, n := range benchSizes {
		payload := make([]byte, n)
		rand.Read(payload)
		env, err := envelope.SealPayload(payload, &a.PublicKey)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := envelope.Open(env, a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncryptDecrypt measures the symmetric part alone (unsealed
// envelopes, no RSA).
func BenchmarkEncryptDecrypt(b *testing.B) {
	for _, n := range benchSizes {
		payload := make([]byte, n)
		rand.Read(payload)
		c, err := envelope.NewClear(payload)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				u, err := c.Encrypt()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := envelope.Decrypt(u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
