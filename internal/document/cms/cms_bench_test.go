package cms

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"testing"
)

var benchSizes = []int{1 << 10, 64 << 10, 1 << 20, 16 << 20}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	default:
		return fmt.Sprintf("%dKiB", n>>10)
	}
}

func benchData(n int) []byte {
	b := make([]byte, n)
	rand.Read(b[:n/2]) // half random, half zeros: compressible but not trivial
	return b
}

func BenchmarkSign(b *testing.B) {
	p := getPKI(b)
	for _, kind := range []string{"rsa", "p256"} {
		id := p.ids[kind]
		for _, n := range benchSizes {
			data := benchData(n)
			b.Run(kind+"/"+sizeName(n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					if _, err := Sign(data, id.key, id.chain[:2], SignOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	p := getPKI(b)
	for _, kind := range []string{"rsa", "p256"} {
		id := p.ids[kind]
		for _, n := range benchSizes {
			der, err := Sign(benchData(n), id.key, id.chain[:2], SignOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(kind+"/"+sizeName(n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					if _, err := Verify(der, VerifyOptions{Roots: p.roots}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	p := getPKI(b)
	for _, cph := range []Cipher{AES256GCM, AES256CBC} {
		for _, kind := range []string{"rsa", "p256"} {
			recips := []*x509.Certificate{p.ids[kind].cert()}
			for _, n := range benchSizes {
				data := benchData(n)
				b.Run(fmt.Sprintf("%v/%s/%s", cph, kind, sizeName(n)), func(b *testing.B) {
					b.SetBytes(int64(n))
					for b.Loop() {
						if _, err := Encrypt(data, recips, EncryptOptions{Cipher: cph}); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	p := getPKI(b)
	for _, cph := range []Cipher{AES256GCM, AES256CBC} {
		for _, kind := range []string{"rsa", "p256"} {
			id := p.ids[kind]
			for _, n := range benchSizes {
				der, err := Encrypt(benchData(n), []*x509.Certificate{id.cert()}, EncryptOptions{Cipher: cph})
				if err != nil {
					b.Fatal(err)
				}
				b.Run(fmt.Sprintf("%v/%s/%s", cph, kind, sizeName(n)), func(b *testing.B) {
					b.SetBytes(int64(n))
					for b.Loop() {
						if _, err := Decrypt(der, id.cert(), id.key); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

func BenchmarkProtect(b *testing.B) {
	p := getPKI(b)
	s, r := p.ids["p256"], p.ids["rsa"]
	for _, n := range benchSizes {
		data := benchData(n)
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := Protect(data, s.key, s.chain[:2], []*x509.Certificate{r.cert()}, ProtectOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	p := getPKI(b)
	s, r := p.ids["p256"], p.ids["rsa"]
	for _, n := range benchSizes {
		der, err := Protect(benchData(n), s.key, s.chain[:2], []*x509.Certificate{r.cert()}, ProtectOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := Open(der, r.cert(), r.key, OpenOptions{Verify: VerifyOptions{Roots: p.roots}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
