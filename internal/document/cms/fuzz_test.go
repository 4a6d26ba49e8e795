package cms

import (
	"bytes"
	"crypto/x509"
	"io"
	"testing"
)

// Fuzz targets for every parser. Seeds are valid messages of each kind;
// crashers found by "go test -fuzz" land in testdata/fuzz and run as
// regression inputs with the normal tests.

func fuzzSeeds(f *testing.F) (*testPKI, [][]byte) {
	p := getPKI(f)
	s, r := p.ids["p256"], p.ids["rsa"]
	var seeds [][]byte
	add := func(der []byte, err error) {
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, der)
	}
	add(Sign(testContent, s.key, s.chain[:2], SignOptions{ReceiptRequest: requestReceipt()}))
	add(Sign(testContent, r.key, r.chain[:2], SignOptions{PSS: true, Detached: true}))
	add(Encrypt(testContent, []*x509.Certificate{r.cert(), s.cert()}, EncryptOptions{}))
	add(Encrypt(testContent, []*x509.Certificate{r.cert(), s.cert()}, EncryptOptions{Cipher: AES256CBC}))
	add(Compress(testContent))
	add(Protect(testContent, s.key, s.chain[:2], []*x509.Certificate{r.cert()}, ProtectOptions{}))
	return p, seeds
}

func FuzzVerify(f *testing.F) {
	p, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	reg := []*x509.Certificate{p.ids["p256"].cert(), p.ids["rsa"].cert()}
	f.Fuzz(func(t *testing.T, der []byte) {
		Verify(der, VerifyOptions{Roots: p.roots, Registered: reg, Content: testContent})
	})
}

func FuzzDecrypt(f *testing.F) {
	p, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	r, e := p.ids["rsa"], p.ids["p256"]
	f.Fuzz(func(t *testing.T, der []byte) {
		Decrypt(der, r.cert(), r.key)
		Decrypt(der, e.cert(), e.key)
		Open(der, r.cert(), r.key, OpenOptions{Verify: VerifyOptions{Roots: p.roots}, MaxSize: 1 << 20})
	})
}

func FuzzDecompress(f *testing.F) {
	_, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		Decompress(der, 1<<20)
	})
}

func FuzzVerifyHeader(f *testing.F) {
	p := getPKI(f)
	id := p.ids["p256"]
	v, err := SignHeader(testBody, id.key, id.cert())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(v)
	f.Fuzz(func(t *testing.T, value string) {
		VerifyHeader(value, testBody, id.cert(), HeaderVerifyOptions{})
	})
}

func FuzzVerifyAcknowledgement(f *testing.F) {
	p := getPKI(f)
	s, r := p.ids["p256"], p.ids["rsa"]
	orig, err := Sign(testContent, s.key, s.chain[:2], SignOptions{ReceiptRequest: requestReceipt()})
	if err != nil {
		f.Fatal(err)
	}
	ack, err := Acknowledge(orig, testContent, "f.txt", r.key, r.chain[:2], AckOptions{Verify: VerifyOptions{Roots: p.roots}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ack)
	f.Fuzz(func(t *testing.T, der []byte) {
		VerifyAcknowledgement(der, orig, testContent, VerifyOptions{Roots: p.roots})
		VerifyReceipt(der, orig, VerifyOptions{Roots: p.roots})
	})
}

// FuzzBER checks that the BER normalizer never panics and that what it
// returns is stable (DER in, same DER out).
func FuzzBER(f *testing.F) {
	_, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{0x30, 0x80, 0x24, 0x80, 0x04, 0x01, 0x41, 0x00, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := toDER(in)
		if err != nil {
			return
		}
		again, err := toDER(out)
		if err != nil {
			t.Fatalf("normalized output does not parse: %v", err)
		}
		if string(again) != string(out) {
			t.Fatalf("normalization not idempotent:\n%x\n%x", out, again)
		}
	})
}

// streamSeeds are the seeds plus BER messages from the streaming writers.
func streamSeeds(f *testing.F) (*testPKI, [][]byte) {
	p, seeds := fuzzSeeds(f)
	s, r := p.ids["p256"], p.ids["rsa"]
	var b bytes.Buffer
	for _, o := range []ProtectStreamOptions{
		{},
		{ProtectOptions: ProtectOptions{Encrypt: EncryptOptions{Cipher: AES256CBC}, NoCompression: true}, OpenSSLNesting: true},
	} {
		b.Reset()
		if _, err := ProtectStream(&b, bytes.NewReader(testContent), s.key, s.chain[:2], []*x509.Certificate{r.cert()}, o); err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, bytes.Clone(b.Bytes()))
	}
	b.Reset()
	if err := SignStream(&b, bytes.NewReader(testContent), s.key, s.chain[:2], SignOptions{}); err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, bytes.Clone(b.Bytes()))
	b.Reset()
	if err := CompressStream(&b, bytes.NewReader(testContent)); err != nil {
		f.Fatal(err)
	}
	return p, append(seeds, bytes.Clone(b.Bytes()))
}

// FuzzStreamReaders feeds the streaming readers (OpenStream, VerifyStream,
// DecryptStream, DecompressStream) arbitrary input: they must not panic,
// and whatever one accepts the whole-message reader accepts too.
func FuzzStreamReaders(f *testing.F) {
	p, seeds := streamSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	r := p.ids["rsa"]
	vo := VerifyOptions{Roots: p.roots}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var out bytes.Buffer
		if _, err := OpenStream(&out, bytes.NewReader(msg), r.cert(), r.key, OpenOptions{Verify: vo, MaxSize: 1 << 20}); err == nil {
			if _, err := VerifyStream(io.Discard, bytes.NewReader(msg), nil, vo); err == nil {
				t.Fatal("one message both opened and verified as SignedData")
			}
		}
		if _, err := VerifyStream(&out, bytes.NewReader(msg), bytes.NewReader(testContent), vo); err == nil {
			if _, err := Verify(msg, VerifyOptions{Roots: p.roots, Content: testContent}); err != nil {
				t.Fatalf("VerifyStream accepted what Verify refuses: %v", err)
			}
		}
		DecryptStream(io.Discard, bytes.NewReader(msg), r.cert(), r.key)
		DecompressStream(io.Discard, bytes.NewReader(msg), 1<<20)
	})
}
