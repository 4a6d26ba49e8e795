package cms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"testing"
)

// TestGCMStream compares the piecewise GCM with crypto/cipher's at sizes
// around the chunk and block boundaries, fed in uneven pieces, with and
// without additional data, and with a 16-byte nonce.
func TestGCMStream(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	sizes := []int{0, 1, 15, 16, 17, ghashChunk - 1, ghashChunk, ghashChunk + 1, 3*ghashChunk + 100}
	for _, nonceLen := range []int{12, 16} {
		for _, aadLen := range []int{0, 13, 200} {
			for _, size := range sizes {
				t.Run(fmt.Sprintf("nonce%d/aad%d/%d", nonceLen, aadLen, size), func(t *testing.T) {
					nonce := make([]byte, nonceLen)
					rand.Read(nonce)
					aad := make([]byte, aadLen)
					rand.Read(aad)
					pt := make([]byte, size)
					rand.Read(pt)
					ref, err := cipher.NewGCMWithNonceSize(block, nonceLen)
					if err != nil {
						t.Fatal(err)
					}
					want := ref.Seal(nil, nonce, pt, aad)
					s, err := newGCMStream(block, nonce)
					if err != nil {
						t.Fatal(err)
					}
					ct := bytes.Clone(pt)
					for p, step := ct, 1; len(p) > 0; step = step*3 + 1 {
						n := min(step, len(p))
						if err := s.seal(p[:n]); err != nil {
							t.Fatal(err)
						}
						p = p[n:]
					}
					tag, err := s.tag(aad)
					if err != nil {
						t.Fatal(err)
					}
					if got := append(ct, tag...); !bytes.Equal(got, want) {
						t.Fatalf("sealed differs from crypto/cipher GCM")
					}
					d, _ := newGCMStream(block, nonce)
					back := bytes.Clone(ct)
					if err := d.open(back); err != nil {
						t.Fatal(err)
					}
					if err := d.check(aad, want[size:]); err != nil || !bytes.Equal(back, pt) {
						t.Fatalf("open: %v", err)
					}
					bad := bytes.Clone(want[size:])
					bad[0] ^= 1
					d2, _ := newGCMStream(block, nonce)
					d2.open(bytes.Clone(ct))
					if err := d2.check(aad, bad); err == nil {
						t.Fatal("a changed tag was accepted")
					}
					d3, _ := newGCMStream(block, nonce)
					d3.open(bytes.Clone(ct))
					if err := d3.check(aad, want[size:size+12]); err != nil {
						t.Fatalf("12-byte tag prefix: %v", err)
					}
				})
			}
		}
	}
}
