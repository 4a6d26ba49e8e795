package cms

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/zlib"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Streaming writers. Each writes one CMS structure (without its
// ContentInfo, which the exported functions add) with indefinite lengths
// around content of unknown size, and the content as OCTET STRING chunks of
// ChunkSize. Close writes what follows the content (signatures, tags) and
// the end-of-contents markers; it does not close the underlying writer.

// signWriter writes SignedData over what is written to it.
type signWriter struct {
	w        io.Writer
	body     *chunker // nil when detached
	hashes   map[crypto.Hash]hash.Hash
	h        crypto.Hash
	ct       asn1.ObjectIdentifier
	key      crypto.Signer
	chain    []*x509.Certificate
	opts     SignOptions
	digestAl algorithmIdentifier
}

func newSignWriter(w io.Writer, ct asn1.ObjectIdentifier, key crypto.Signer, chain []*x509.Certificate, opts SignOptions) (*signWriter, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, fmt.Errorf("%w: no signer certificate", ErrSignerNotFound)
	}
	h := opts.hash()
	alg, err := digestAlgorithm(h)
	if err != nil {
		return nil, err
	}
	if _, _, err := signatureAlgorithm(key.Public(), h, opts.PSS); err != nil {
		return nil, err
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(chain[0].PublicKey) {
		return nil, fmt.Errorf("%w: key does not match certificate %q", ErrUnsupportedKey, chain[0].Subject)
	}
	if opts.NoSignedAttributes && !ct.Equal(oidData) {
		return nil, fmt.Errorf("%w: signed attributes are required for this content", ErrUnsupportedAlgorithm)
	}
	s := &signWriter{w: w, hashes: map[crypto.Hash]hash.Hash{h: h.New()}, h: h, ct: ct, key: key, chain: chain, opts: opts, digestAl: alg}
	version := int64(1)
	if !ct.Equal(oidData) || opts.SubjectKeyID {
		version = 3
	}
	var b cryptobyte.Builder
	b.AddASN1Int64(version)
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { alg.add(b) })
	if err := writeAll(w, header(tagSeq), b.BytesOrPanic()); err != nil {
		return nil, err
	}
	if opts.Detached {
		var e cryptobyte.Builder
		e.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(ct) })
		return s, writeAll(w, e.BytesOrPanic())
	}
	s.body = newChunker(w, nil)
	return s, writeAll(w, header(tagSeq), oidElement(ct), header(tagCtx0Cons), header(tagOctetsCons))
}

func (s *signWriter) Write(p []byte) (int, error) {
	for _, h := range s.hashes {
		h.Write(p)
	}
	if s.body == nil {
		return len(p), nil
	}
	return s.body.Write(p)
}

func (s *signWriter) Close() error {
	if s.body != nil {
		if err := s.body.Close(); err != nil {
			return err
		}
		if err := writeAll(s.w, eoc, eoc, eoc); err != nil {
			return err
		}
	}
	dg := func(h crypto.Hash) ([]byte, error) { return s.hashes[h].Sum(nil), nil }
	si, err := newSignerInfoDigest(dg, s.ct, s.key, s.chain, &s.opts)
	if err != nil {
		return err
	}
	var b cryptobyte.Builder
	if !s.opts.OmitCertificates {
		b.AddASN1(tagC0, func(b *cryptobyte.Builder) {
			for _, c := range s.chain {
				b.AddBytes(c.Raw)
			}
		})
	}
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(si.encode()) })
	return writeAll(s.w, b.BytesOrPanic(), eoc)
}

// compressWriter writes CompressedData (zlib) of id-data.
type compressWriter struct {
	w    io.Writer
	body *chunker
	z    *zlib.Writer
}

func newCompressWriter(w io.Writer) (*compressWriter, error) {
	var b cryptobyte.Builder
	b.AddASN1Int64(0)
	algorithmIdentifier{oid: oidCompressionZlib}.add(&b)
	if err := writeAll(w, header(tagSeq), b.BytesOrPanic(), header(tagSeq), oidElement(oidData),
		header(tagCtx0Cons), header(tagOctetsCons)); err != nil {
		return nil, err
	}
	c := &compressWriter{w: w, body: newChunker(w, nil)}
	c.z = zlib.NewWriter(c.body)
	return c, nil
}

func (c *compressWriter) Write(p []byte) (int, error) { return c.z.Write(p) }

func (c *compressWriter) Close() error {
	if err := c.z.Close(); err != nil {
		return err
	}
	if err := c.body.Close(); err != nil {
		return err
	}
	return writeAll(c.w, eoc, eoc, eoc, eoc)
}

// encryptWriter writes AuthEnvelopedData (GCM) or EnvelopedData (CBC).
type encryptWriter struct {
	w         io.Writer
	body      *chunker
	gcm       *gcmStream
	cbc       cipher.BlockMode
	authAttrs []byte
}

func newEncryptWriter(w io.Writer, recipients []*x509.Certificate, opts *EncryptOptions) (*encryptWriter, error) {
	k, err := newContentKey(recipients, opts)
	if err != nil {
		return nil, err
	}
	rnd, ct, ris, riVersion2, block := k.rnd, k.contentType, k.recipientInfos, k.riVersion2, k.block
	e := &encryptWriter{w: w}
	var alg algorithmIdentifier
	version := int64(0)
	switch opts.Cipher {
	case AES256GCM:
		nonce := make([]byte, gcmNonce)
		if _, err := io.ReadFull(rnd, nonce); err != nil {
			return nil, fmt.Errorf("nonce: %w", err)
		}
		if e.gcm, err = newGCMStream(block, nonce); err != nil {
			return nil, err
		}
		if !ct.Equal(oidData) {
			e.authAttrs = encodeAttributes([]attribute{{typ: oidBytes(oidAttrContentType), values: [][]byte{mustMarshal(ct)}}})
		}
		alg = algorithmIdentifier{oid: oidAES256GCM, params: gcmParams(nonce)}
		e.body = newChunker(w, e.gcm.seal)
	case AES256CBC:
		iv := make([]byte, aes.BlockSize)
		if _, err := io.ReadFull(rnd, iv); err != nil {
			return nil, fmt.Errorf("IV: %w", err)
		}
		if riVersion2 {
			version = 2
		}
		e.cbc = cipher.NewCBCEncrypter(block, iv)
		alg = algorithmIdentifier{oid: oidAES256CBC, params: mustMarshal(iv)}
		e.body = newChunker(w, func(p []byte) error { e.cbc.CryptBlocks(p, p); return nil })
	default:
		return nil, fmt.Errorf("%w: cipher %d", ErrUnsupportedAlgorithm, opts.Cipher)
	}
	var b cryptobyte.Builder
	b.AddASN1Int64(version)
	addSet(&b, ris)
	if err := writeAll(w, header(tagSeq), b.BytesOrPanic(), header(tagSeq), oidElement(ct),
		marshalAlgorithm(alg), header(tagCtx0Cons)); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *encryptWriter) Write(p []byte) (int, error) { return e.body.Write(p) }

func (e *encryptWriter) Close() error {
	if e.cbc != nil {
		// The chunker holds less than a chunk; pad it to whole blocks.
		pad := aes.BlockSize - len(e.body.buf)%aes.BlockSize
		for range pad {
			e.body.buf = append(e.body.buf, byte(pad))
		}
	}
	if err := e.body.Close(); err != nil {
		return err
	}
	if err := writeAll(e.w, eoc, eoc); err != nil {
		return err
	}
	if e.gcm == nil {
		return writeAll(e.w, eoc)
	}
	var aad []byte
	if e.authAttrs != nil {
		aad = setOf(e.authAttrs)
	}
	tag, err := e.gcm.tag(aad)
	if err != nil {
		return err
	}
	var b cryptobyte.Builder
	if e.authAttrs != nil {
		b.AddASN1(tagC1, func(b *cryptobyte.Builder) { b.AddBytes(e.authAttrs) })
	}
	b.AddASN1OctetString(tag[:gcmTagLen])
	return writeAll(e.w, b.BytesOrPanic(), eoc)
}

// SignStream reads content from r and writes a BER ContentInfo holding
// SignedData to w (attached, or detached with opts.Detached), in memory
// independent of the content's size. See Sign for the keys.
func SignStream(w io.Writer, r io.Reader, key crypto.Signer, chain []*x509.Certificate, opts SignOptions) error {
	if err := signStream(w, r, key, chain, opts); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	return nil
}

func signStream(w io.Writer, r io.Reader, key crypto.Signer, chain []*x509.Certificate, opts SignOptions) error {
	if err := startContentInfo(w, oidSignedData); err != nil {
		return err
	}
	s, err := newSignWriter(w, oidData, key, chain, opts)
	if err != nil {
		return err
	}
	if _, err := copyBuf(s, r); err != nil {
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	return endContentInfo(w)
}

// EncryptStream reads content from r and writes a BER ContentInfo holding
// AuthEnvelopedData or EnvelopedData to w, as Encrypt does, streaming.
func EncryptStream(w io.Writer, r io.Reader, recipients []*x509.Certificate, opts EncryptOptions) error {
	err := func() error {
		typ := oidAuthEnvelopedData
		if opts.Cipher == AES256CBC {
			typ = oidEnvelopedData
		}
		if err := startContentInfo(w, typ); err != nil {
			return err
		}
		e, err := newEncryptWriter(w, recipients, &opts)
		if err != nil {
			return err
		}
		if _, err := copyBuf(e, r); err != nil {
			return err
		}
		if err := e.Close(); err != nil {
			return err
		}
		return endContentInfo(w)
	}()
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	return nil
}

// CompressStream reads content from r and writes a BER ContentInfo holding
// CompressedData (zlib) to w.
func CompressStream(w io.Writer, r io.Reader) error {
	err := func() error {
		if err := startContentInfo(w, oidCompressedData); err != nil {
			return err
		}
		c, err := newCompressWriter(w)
		if err != nil {
			return err
		}
		if _, err := copyBuf(c, r); err != nil {
			return err
		}
		if err := c.Close(); err != nil {
			return err
		}
		return endContentInfo(w)
	}()
	if err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	return nil
}

// copyBuf copies with a ChunkSize buffer.
func copyBuf(w io.Writer, r io.Reader) (int64, error) {
	return io.CopyBuffer(onlyWriter{w}, onlyReader{r}, make([]byte, ChunkSize))
}

// onlyWriter and onlyReader hide ReadFrom/WriteTo so that io.CopyBuffer
// uses its buffer.
type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }
