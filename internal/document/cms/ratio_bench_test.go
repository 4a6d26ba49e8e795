package cms

import (
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkVersusOpenSSL runs each operation in Go and with the openssl
// command (one process per operation, as a peer would) in the same
// benchmark, and reports both throughputs and their ratio (go/openssl).
// Protect/open have no openssl counterpart here (no zlib in Debian's
// openssl); see BenchmarkProtect and BenchmarkOpen.
func BenchmarkVersusOpenSSL(b *testing.B) {
	p := getPKI(b)
	id, rid := p.ids["p256"], p.ids["rsa"]
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
			goOp func() error
			args []string
		}{
			{"sign/p256", func() error { _, err := Sign(data, id.key, id.chain[:2], SignOptions{}); return err },
				[]string{"cms", "-sign", "-binary", "-nodetach", "-in", in, "-signer", id.certFile, "-inkey", id.keyFile,
					"-certfile", p.inter.certFile, "-outform", "DER", "-out", out}},
			{"verify/p256", func() error { _, err := Verify(sig, VerifyOptions{Roots: p.roots}); return err },
				[]string{"cms", "-verify", "-binary", "-inform", "DER", "-in", sigFile, "-CAfile", p.caFile, "-out", out}},
			{"encrypt/gcm-rsa", func() error {
				_, err := Encrypt(data, []*x509.Certificate{rid.cert()}, EncryptOptions{})
				return err
			}, []string{"cms", "-encrypt", "-binary", "-aes-256-gcm", "-in", in, "-recip", rid.certFile,
				"-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-outform", "DER", "-out", out}},
			{"decrypt/gcm-rsa", func() error { _, err := Decrypt(enc, rid.cert(), rid.key); return err },
				[]string{"cms", "-decrypt", "-binary", "-inform", "DER", "-in", encFile, "-recip", rid.certFile,
					"-inkey", rid.keyFile, "-out", out}},
		}
		for _, op := range ops {
			b.Run(op.name+"/"+sizeName(n), func(b *testing.B) {
				var goT, sslT time.Duration
				for b.Loop() {
					t0 := time.Now()
					if err := op.goOp(); err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					if _, err := openssl(b, op.args...); err != nil {
						b.Fatal(err)
					}
					goT += t1.Sub(t0)
					sslT += time.Since(t1)
				}
				mb := float64(n) * float64(b.N) / 1e6
				b.ReportMetric(mb/goT.Seconds(), "go-MB/s")
				b.ReportMetric(mb/sslT.Seconds(), "openssl-MB/s")
				b.ReportMetric(sslT.Seconds()/goT.Seconds(), "go/openssl")
			})
		}
	}
}
