package cms

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// docReader yields size deterministic bytes: random, or text that
// compresses.
func docReader(size int64, text bool) io.Reader {
	if text {
		line := []byte("<invoice><line sku=\"W-100\">widget</line></invoice>\n")
		return io.LimitReader(&repeatReader{line: line}, size)
	}
	return io.LimitReader(rand.NewChaCha8([32]byte{1, 2, 3}), size)
}

type repeatReader struct {
	line []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.line[r.off]
		r.off = (r.off + 1) % len(r.line)
	}
	return len(p), nil
}

func sum(r io.Reader) []byte {
	h := sha256.New()
	io.Copy(h, r)
	return h.Sum(nil)
}

// TestStreamRoundTrip protects and opens documents of boundary sizes in
// both encodings: BER (ProtectStream) read by OpenStream and by Open, DER
// (Protect) read by OpenStream.
func TestStreamRoundTrip(t *testing.T) {
	p := getPKI(t)
	s, r := p.ids["p256"], p.ids["rsa"]
	sizes := []int64{0, 1, 15, 16, 17, ChunkSize - 1, ChunkSize, ChunkSize + 1, 2*ChunkSize + 17, CompressSample + 3}
	type variant struct {
		cipher  Cipher
		comp    string
		openssl bool
	}
	var variants []variant
	for _, c := range []Cipher{AES256GCM, AES256CBC} {
		for _, comp := range []string{"on", "off", "auto"} {
			for _, o := range []bool{false, true} {
				variants = append(variants, variant{c, comp, o})
			}
		}
	}
	vo := VerifyOptions{Roots: p.roots}
	for _, v := range variants {
		for _, size := range sizes {
			for _, text := range []bool{false, true} {
				name := fmt.Sprintf("%v/compress=%s/openssl=%v/%d/text=%v", v.cipher, v.comp, v.openssl, size, text)
				t.Run(name, func(t *testing.T) {
					doc, _ := io.ReadAll(docReader(size, text))
					opts := ProtectStreamOptions{ProtectOptions: ProtectOptions{Encrypt: EncryptOptions{Cipher: v.cipher},
						NoCompression: v.comp == "off"}, AutoCompress: v.comp == "auto", OpenSSLNesting: v.openssl}
					var msg, keep bytes.Buffer
					opts.Keep = &keep
					res, err := ProtectStream(&msg, bytes.NewReader(doc), s.key, s.chain[:2], []*x509.Certificate{r.cert()}, opts)
					if err != nil {
						t.Fatal(err)
					}
					wantComp := v.comp == "on" || (v.comp == "auto" && text && size >= 64)
					if res.Size != size || res.Compressed != wantComp {
						t.Fatalf("size %d compressed %v, want %d %v", res.Size, res.Compressed, size, wantComp)
					}
					if msg.Bytes()[1] != 0x80 {
						t.Fatalf("not indefinite-length BER: % x", msg.Bytes()[:4])
					}
					var out bytes.Buffer
					o, err := OpenStream(&out, bytes.NewReader(msg.Bytes()), r.cert(), r.key, OpenOptions{Verify: vo})
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(out.Bytes(), doc) || o.Size != size || o.Compressed != wantComp || o.AsData != v.openssl {
						t.Fatalf("stream open: %d bytes, compressed %v, as data %v", out.Len(), o.Compressed, o.AsData)
					}
					if want := sha256.Sum256(doc); !bytes.Equal(must(o.DocumentDigest(0x5)), want[:]) {
						t.Fatal("document digest differs")
					}
					// The kept SignedData verifies on its own.
					var kept bytes.Buffer
					if _, err := VerifyStream(&kept, bytes.NewReader(keep.Bytes()), nil, vo); err != nil {
						t.Fatalf("kept SignedData: %v", err)
					}
					if !v.openssl {
						// The whole-message reader takes the BER too.
						o2, err := Open(msg.Bytes(), r.cert(), r.key, OpenOptions{Verify: vo})
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(o2.Content, doc) {
							t.Fatal("Open of the BER message differs")
						}
						// And the stream reader takes DER.
						der, err := Protect(doc, s.key, s.chain[:2], []*x509.Certificate{r.cert()}, opts.ProtectOptions)
						if err != nil {
							t.Fatal(err)
						}
						out.Reset()
						if _, err := OpenStream(&out, bytes.NewReader(der), r.cert(), r.key, OpenOptions{Verify: vo}); err != nil || !bytes.Equal(out.Bytes(), doc) {
							t.Fatalf("stream open of DER: %v", err)
						}
					}
				})
			}
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestStreamLarge round-trips 64 MiB through a pipe in both ciphers and
// checks that memory allocated does not grow with the document.
func TestStreamLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB round trips; run without -short")
	}
	p := getPKI(t)
	s, r := p.ids["p256"], p.ids["rsa"]
	const size = 64 << 20
	for _, c := range []Cipher{AES256GCM, AES256CBC} {
		for _, text := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/text=%v", c, text), func(t *testing.T) {
				want := sum(docReader(size, text))
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				pr, pw := io.Pipe()
				go func() {
					_, err := ProtectStream(pw, docReader(size, text), s.key, s.chain[:2], []*x509.Certificate{r.cert(), s.cert()},
						ProtectStreamOptions{ProtectOptions: ProtectOptions{Encrypt: EncryptOptions{Cipher: c}}, AutoCompress: true})
					pw.CloseWithError(err)
				}()
				h := sha256.New()
				o, err := OpenStream(h, pr, r.cert(), r.key, OpenOptions{Verify: VerifyOptions{Roots: p.roots}})
				if err != nil {
					t.Fatal(err)
				}
				runtime.ReadMemStats(&after)
				if !bytes.Equal(h.Sum(nil), want) || o.Size != size || o.Compressed != text {
					t.Fatalf("64 MiB round trip differs (size %d, compressed %v)", o.Size, o.Compressed)
				}
				if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
					t.Fatalf("allocated %d MiB for a %d MiB document: not constant", alloc>>20, size>>20)
				}
			})
		}
	}
	t.Run("DER", func(t *testing.T) {
		doc, _ := io.ReadAll(docReader(size, false))
		der, err := Protect(doc, s.key, s.chain[:2], []*x509.Certificate{r.cert()}, ProtectOptions{NoCompression: true})
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := OpenStream(h, bytes.NewReader(der), r.cert(), r.key, OpenOptions{Verify: VerifyOptions{Roots: p.roots}}); err != nil {
			t.Fatal(err)
		}
		if want := sha256.Sum256(doc); !bytes.Equal(h.Sum(nil), want[:]) {
			t.Fatal("64 MiB DER message opened differently")
		}
	})
}

// TestStreamTamper changes one byte at a time across a streamed message
// (every header, the recipient infos, the ciphertext and the tag) and
// requires OpenStream to refuse each: the GCM tag, CBC padding, the
// signature and strict version numbers (unauthenticated, and in CBC's
// first block malleable) leave nothing through.
func TestStreamTamper(t *testing.T) {
	p := getPKI(t)
	s, r := p.ids["p256"], p.ids["rsa"]
	doc, _ := io.ReadAll(docReader(3*ChunkSize+5, true))
	for _, c := range []Cipher{AES256GCM, AES256CBC} {
		t.Run(c.String(), func(t *testing.T) {
			var msg bytes.Buffer
			if _, err := ProtectStream(&msg, bytes.NewReader(doc), s.key, s.chain[:2], []*x509.Certificate{r.cert()},
				ProtectStreamOptions{ProtectOptions: ProtectOptions{Encrypt: EncryptOptions{Cipher: c}}}); err != nil {
				t.Fatal(err)
			}
			m := msg.Bytes()
			step := 1
			for i := 0; i < len(m); i += step {
				if i > 2000 && i < len(m)-2000 {
					step = 997
				} else {
					step = 1
				}
				bad := bytes.Clone(m)
				bad[i] ^= 0x01
				var out bytes.Buffer
				_, err := OpenStream(&out, bytes.NewReader(bad), r.cert(), r.key, OpenOptions{Verify: VerifyOptions{Roots: p.roots}})
				if err == nil {
					t.Errorf("byte %d of %d (%#x) changed: opened", i, len(m), m[i])
				}
			}
			// Truncated anywhere: refused.
			for _, n := range []int{1, 10, len(m) / 2, len(m) - 3, len(m) - 1} {
				if _, err := OpenStream(io.Discard, bytes.NewReader(m[:n]), r.cert(), r.key, OpenOptions{Verify: VerifyOptions{Roots: p.roots}}); err == nil {
					t.Fatalf("truncated to %d bytes: opened", n)
				}
			}
		})
	}
}

// TestStreamOpenSSLIn reads what openssl writes with -stream (indefinite
// lengths): signed, encrypted, and signed then encrypted.
func TestStreamOpenSSLIn(t *testing.T) {
	p := getPKI(t)
	s, r := p.ids["p256"], p.ids["rsa"]
	dir := t.TempDir()
	docFile := filepath.Join(dir, "doc")
	doc, _ := io.ReadAll(docReader(5*ChunkSize+3, false))
	os.WriteFile(docFile, doc, 0o600)
	signed := filepath.Join(dir, "signed.der")
	if _, err := openssl(t, "cms", "-sign", "-stream", "-binary", "-nodetach", "-in", docFile, "-outform", "DER",
		"-out", signed, "-signer", s.certFile, "-inkey", s.keyFile, "-certfile", p.inter.certFile); err != nil {
		t.Fatal(err)
	}
	sig, _ := os.ReadFile(signed)
	if sig[1] != 0x80 {
		t.Fatalf("openssl -stream did not write indefinite lengths")
	}
	var out bytes.Buffer
	if _, err := VerifyStream(&out, bytes.NewReader(sig), nil, VerifyOptions{Roots: p.roots}); err != nil || !bytes.Equal(out.Bytes(), doc) {
		t.Fatalf("verify openssl -stream signature: %v", err)
	}
	for _, cph := range []string{"-aes-256-gcm", "-aes-256-cbc"} {
		enc := filepath.Join(dir, "enc"+cph)
		if _, err := openssl(t, "cms", "-encrypt", "-stream", "-binary", cph, "-in", signed, "-outform", "DER", "-out", enc,
			"-recip", r.certFile); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(enc)
		out.Reset()
		o, err := OpenStream(&out, f, r.cert(), r.key, OpenOptions{Verify: VerifyOptions{Roots: p.roots}})
		f.Close()
		if err != nil || !bytes.Equal(out.Bytes(), doc) || !o.AsData {
			t.Fatalf("%s: open openssl -sign -stream | -encrypt -stream: %v", cph, err)
		}
		plain := filepath.Join(dir, "plain"+cph)
		if _, err := openssl(t, "cms", "-encrypt", "-stream", "-binary", cph, "-in", docFile, "-outform", "DER", "-out", plain,
			"-recip", r.certFile); err != nil {
			t.Fatal(err)
		}
		f, _ = os.Open(plain)
		out.Reset()
		err = DecryptStream(&out, f, r.cert(), r.key)
		f.Close()
		if err != nil || !bytes.Equal(out.Bytes(), doc) {
			t.Fatalf("%s: decrypt openssl -encrypt -stream: %v", cph, err)
		}
		// A plain encrypted document is not a signed one.
		f, _ = os.Open(plain)
		_, err = OpenStream(io.Discard, f, r.cert(), r.key, OpenOptions{Verify: VerifyOptions{Roots: p.roots}})
		f.Close()
		if !errors.Is(err, ErrNotSigned) {
			t.Fatalf("%s: unsigned content: %v, want ErrNotSigned", cph, err)
		}
	}
}

// TestStreamOpenSSLOut gives our indefinite-length output to openssl:
// signatures to -verify, encryption to -decrypt, and a protected document
// in openssl's nesting to -decrypt then -verify.
func TestStreamOpenSSLOut(t *testing.T) {
	p := getPKI(t)
	s, r := p.ids["p256"], p.ids["rsa"]
	dir := t.TempDir()
	doc, _ := io.ReadAll(docReader(3*ChunkSize+1, false))
	write := func(name string, f func(w io.Writer) error) string {
		path := filepath.Join(dir, name)
		out, _ := os.Create(path)
		defer out.Close()
		if err := f(out); err != nil {
			t.Fatal(err)
		}
		return path
	}
	sig := write("sig.der", func(w io.Writer) error {
		return SignStream(w, bytes.NewReader(doc), s.key, s.chain[:2], SignOptions{})
	})
	got, err := openssl(t, "cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-CAfile", p.caFile)
	if err != nil || !bytes.Equal(got, doc) {
		t.Fatalf("openssl -verify of SignStream output: %v", err)
	}
	for _, c := range []Cipher{AES256GCM, AES256CBC} {
		enc := write("enc-"+c.String(), func(w io.Writer) error {
			return EncryptStream(w, bytes.NewReader(doc), []*x509.Certificate{r.cert(), s.cert()}, EncryptOptions{Cipher: c})
		})
		got, err := openssl(t, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", enc, "-recip", r.certFile, "-inkey", r.keyFile)
		if err != nil || !bytes.Equal(got, doc) {
			t.Fatalf("openssl -decrypt of EncryptStream %v output: %v", c, err)
		}
		prot := write("prot-"+c.String(), func(w io.Writer) error {
			_, err := ProtectStream(w, bytes.NewReader(doc), s.key, s.chain[:2], []*x509.Certificate{r.cert()},
				ProtectStreamOptions{ProtectOptions: ProtectOptions{Encrypt: EncryptOptions{Cipher: c}, NoCompression: true}, OpenSSLNesting: true})
			return err
		})
		inner := filepath.Join(dir, "inner-"+c.String())
		if _, err := openssl(t, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", prot, "-recip", r.certFile, "-inkey", r.keyFile, "-out", inner); err != nil {
			t.Fatal(err)
		}
		got, err = openssl(t, "cms", "-verify", "-binary", "-inform", "DER", "-in", inner, "-CAfile", p.caFile)
		if err != nil || !bytes.Equal(got, doc) {
			t.Fatalf("openssl -decrypt | -verify of ProtectStream %v (openssl nesting): %v", c, err)
		}
	}
	comp := write("comp.der", func(w io.Writer) error { return CompressStream(w, bytes.NewReader(doc)) })
	f, _ := os.Open(comp)
	defer f.Close()
	var back bytes.Buffer
	if err := DecompressStream(&back, f, 0); err != nil || !bytes.Equal(back.Bytes(), doc) {
		t.Fatalf("CompressStream/DecompressStream: %v", err)
	}
	cdata, _ := os.ReadFile(comp)
	if plain, err := Decompress(cdata, 0); err != nil || !bytes.Equal(plain, doc) {
		t.Fatalf("Decompress of CompressStream output: %v", err)
	}
}

// TestStreamAcknowledge acknowledges a streamed document, with and without
// signed attributes on the original (openssl cms -sign -noattr: bound to
// the signature value), and checks the acknowledgement against the
// sender's own copy opened again.
func TestStreamAcknowledge(t *testing.T) {
	p := getPKI(t)
	s, r := p.ids["p256"], p.ids["rsa"]
	doc, _ := io.ReadAll(docReader(ChunkSize+9, true))
	vo := VerifyOptions{Roots: p.roots}
	for _, noAttr := range []bool{false, true} {
		t.Run(fmt.Sprintf("noattr=%v", noAttr), func(t *testing.T) {
			var msg bytes.Buffer
			if _, err := ProtectStream(&msg, bytes.NewReader(doc), s.key, s.chain[:2], []*x509.Certificate{r.cert(), s.cert()},
				ProtectStreamOptions{ProtectOptions: ProtectOptions{Sign: SignOptions{NoSignedAttributes: noAttr}, NoCompression: noAttr}}); err != nil {
				t.Fatal(err)
			}
			o, err := OpenStream(io.Discard, bytes.NewReader(msg.Bytes()), r.cert(), r.key, OpenOptions{Verify: vo})
			if err != nil {
				t.Fatal(err)
			}
			ack, err := AcknowledgeOpened(o, "doc.txt", r.key, r.chain[:2], AckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			mine, err := OpenStream(io.Discard, bytes.NewReader(msg.Bytes()), s.cert(), s.key,
				OpenOptions{Verify: vo, DocumentHashes: []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}})
			if err != nil {
				t.Fatal(err)
			}
			a, err := VerifyAcknowledgementOpened(ack, mine, vo)
			if err != nil {
				t.Fatal(err)
			}
			if a.FileName != "doc.txt" || a.FileSize != int64(len(doc)) {
				t.Fatalf("acknowledged %q %d", a.FileName, a.FileSize)
			}
			// Another document of the same size is not acknowledged.
			other := bytes.Clone(doc)
			other[0] ^= 1
			var msg2 bytes.Buffer
			ProtectStream(&msg2, bytes.NewReader(other), s.key, s.chain[:2], []*x509.Certificate{s.cert()},
				ProtectStreamOptions{ProtectOptions: ProtectOptions{Sign: SignOptions{NoSignedAttributes: noAttr}, NoCompression: noAttr}})
			mine2, err := OpenStream(io.Discard, &msg2, s.cert(), s.key, OpenOptions{Verify: vo})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyAcknowledgementOpened(ack, mine2, vo); !errors.Is(err, ErrReceipt) && !errors.Is(err, ErrAcknowledgement) {
				t.Fatalf("acknowledgement of another document: %v", err)
			}
		})
	}
}

// TestUnarmor reads openssl's three output forms of one encrypted message.
func TestUnarmor(t *testing.T) {
	p := getPKI(t)
	r := p.ids["rsa"]
	dir := t.TempDir()
	doc, _ := io.ReadAll(docReader(100000, false))
	in := filepath.Join(dir, "doc")
	os.WriteFile(in, doc, 0o600)
	for _, form := range []Format{FormatDER, FormatPEM, FormatSMIME} {
		t.Run(string(form), func(t *testing.T) {
			out := filepath.Join(dir, "enc."+string(form[:1]))
			args := []string{"cms", "-encrypt", "-binary", "-aes-256-cbc", "-in", in, "-out", out, "-recip", r.certFile}
			switch form {
			case FormatDER:
				args = append(args, "-outform", "DER")
			case FormatPEM:
				args = append(args, "-outform", "PEM")
			}
			if _, err := openssl(t, args...); err != nil {
				t.Fatal(err)
			}
			f, _ := os.Open(out)
			defer f.Close()
			br, got, err := Unarmor(f)
			if err != nil || got != form {
				t.Fatalf("Unarmor: %v %v, want %v", got, err, form)
			}
			var plain bytes.Buffer
			if err := DecryptStream(&plain, br, r.cert(), r.key); err != nil || !bytes.Equal(plain.Bytes(), doc) {
				t.Fatalf("decrypt %v: %v", form, err)
			}
		})
	}
	for _, bad := range []string{"", "hello\n", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"MIME-Version: 1.0\nContent-Type: multipart/signed; boundary=x\n\n--x\n"} {
		if _, _, err := Unarmor(bytes.NewReader([]byte(bad))); err == nil {
			t.Errorf("Unarmor(%q) accepted", bad)
		}
	}
}

// TestStreamMaxSize: a document beyond OpenOptions.MaxSize is refused,
// compressed (a bomb inflates far beyond its message) or not.
func TestStreamMaxSize(t *testing.T) {
	p := getPKI(t)
	s, r := p.ids["p256"], p.ids["rsa"]
	for _, comp := range []bool{true, false} {
		var msg bytes.Buffer
		if _, err := ProtectStream(&msg, docReader(4<<20, true), s.key, s.chain[:2], []*x509.Certificate{r.cert()},
			ProtectStreamOptions{ProtectOptions: ProtectOptions{NoCompression: !comp}}); err != nil {
			t.Fatal(err)
		}
		if comp && msg.Len() > 1<<20 {
			t.Fatalf("4 MiB of text compressed to %d bytes", msg.Len())
		}
		var out countWriter
		out.w = io.Discard
		_, err := OpenStream(&out, bytes.NewReader(msg.Bytes()), r.cert(), r.key, OpenOptions{Verify: VerifyOptions{Roots: p.roots}, MaxSize: 1 << 20})
		if !errors.Is(err, ErrDecompress) || out.n > 1<<20+ChunkSize {
			t.Fatalf("compressed=%v: %v after %d bytes, want ErrDecompress within the limit", comp, err, out.n)
		}
	}
}

// TestStreamDetached: a detached signature over a streamed file verifies
// with the content given as a stream, in Go and in openssl, and not with
// other content or none.
func TestStreamDetached(t *testing.T) {
	p := getPKI(t)
	s := p.ids["p384"]
	doc, _ := io.ReadAll(docReader(3*ChunkSize+11, false))
	var sig bytes.Buffer
	if err := SignStream(&sig, bytes.NewReader(doc), s.key, s.chain[:2], SignOptions{Detached: true, Hash: crypto.SHA384}); err != nil {
		t.Fatal(err)
	}
	if sig.Len() > 8<<10 {
		t.Fatalf("detached signature of %d bytes holds the content", sig.Len())
	}
	var out bytes.Buffer
	if _, err := VerifyStream(&out, bytes.NewReader(sig.Bytes()), bytes.NewReader(doc), VerifyOptions{Roots: p.roots}); err != nil || !bytes.Equal(out.Bytes(), doc) {
		t.Fatalf("verify detached: %v", err)
	}
	other := bytes.Clone(doc)
	other[len(other)-1] ^= 1
	if _, err := VerifyStream(io.Discard, bytes.NewReader(sig.Bytes()), bytes.NewReader(other), VerifyOptions{Roots: p.roots}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("other content: %v, want ErrDigestMismatch", err)
	}
	if _, err := VerifyStream(io.Discard, bytes.NewReader(sig.Bytes()), nil, VerifyOptions{Roots: p.roots}); !errors.Is(err, ErrNoContent) {
		t.Fatalf("no content: %v, want ErrNoContent", err)
	}
	if _, err := Verify(sig.Bytes(), VerifyOptions{Roots: p.roots, Content: doc}); err != nil {
		t.Fatalf("Verify of the BER detached signature: %v", err)
	}
	if _, err := openssl(t, "cms", "-verify", "-binary", "-inform", "DER", "-in", writeFile(t, "sig", sig.Bytes()),
		"-content", writeFile(t, "doc", doc), "-CAfile", p.caFile, "-out", "/dev/null"); err != nil {
		t.Fatalf("openssl -verify of the detached stream signature: %v", err)
	}
}
