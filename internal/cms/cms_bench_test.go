package cms

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"path/filepath"
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

// BenchmarkOpenSSL runs the same operations with the openssl command (one
// process per operation, as a peer would), so that "go test -bench ." prints
// both and the throughput ratio can be read off directly.
func BenchmarkOpenSSL(b *testing.B) {
	p := getPKI(b)
	id := p.ids["p256"]
	rid := p.ids["rsa"]
	for _, n := range benchSizes {
		data := benchData(n)
		in := writeFile(b, "in", data)
		sig, err := Sign(data, id.key, id.chain[:2], SignOptions{})
		if err != nil {
			b.Fatal(err)
		}
		sigFile := writeFile(b, "sig.der", sig)
		enc, err := Encrypt(data, []*x509.Certificate{rid.cert()}, EncryptOptions{})
		if err != nil {
			b.Fatal(err)
		}
		encFile := writeFile(b, "enc.der", enc)
		out := filepath.Join(b.TempDir(), "out")
		ops := []struct {
			name string
			args []string
		}{
			{"sign/p256", []string{"cms", "-sign", "-binary", "-nodetach", "-in", in, "-signer", id.certFile,
				"-inkey", id.keyFile, "-certfile", p.inter.certFile, "-outform", "DER", "-out", out}},
			{"verify/p256", []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", sigFile,
				"-CAfile", p.caFile, "-out", out}},
			{"encrypt/AES-256-GCM/rsa", []string{"cms", "-encrypt", "-binary", "-aes-256-gcm", "-in", in,
				"-recip", rid.certFile, "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256",
				"-outform", "DER", "-out", out}},
			{"decrypt/AES-256-GCM/rsa", []string{"cms", "-decrypt", "-binary", "-inform", "DER", "-in", encFile,
				"-recip", rid.certFile, "-inkey", rid.keyFile, "-out", out}},
		}
		for _, op := range ops {
			b.Run(op.name+"/"+sizeName(n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					if _, err := openssl(b, op.args...); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
