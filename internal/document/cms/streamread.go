package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/zlib"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Streaming readers. They accept definite and indefinite lengths alike and
// hold only the small elements in memory. Content is passed on as it is
// read, before the signature or the GCM tag at the end of the message can
// be checked: the caller must treat what was written as provisional until
// the function returns nil (package client writes it to a temporary file
// and renames it only then).

// envelopeReader decrypts the content of (Auth)EnvelopedData as it is read.
// At the end of the ciphertext it reads the fields that follow (authAttrs,
// mac) and checks the tag before it returns io.EOF.
type envelopeReader struct {
	d      *decoder
	env    *envelope
	outer  frame
	eci    frame
	octets io.Reader
	gcm    *gcmStream
	tagLen int
	cbc    cipher.BlockMode
	buf    []byte
	hold   []byte // CBC: ciphertext not yet decrypted (the last block is kept until the end)
	out    []byte // plaintext ready
	total  int64
	done   bool
	err    error
}

// openEnvelope reads (Auth)EnvelopedData up to its encrypted content (d is
// positioned after the ContentInfo header) and recovers the key.
func openEnvelope(d *decoder, typ asn1.ObjectIdentifier, cert *x509.Certificate, key crypto.PrivateKey) (*envelopeReader, error) {
	e := &envelopeReader{d: d, env: new(envelope), buf: make([]byte, ChunkSize+2*aes.BlockSize)}
	switch {
	case typ.Equal(oidEnvelopedData):
	case typ.Equal(oidAuthEnvelopedData):
		e.env.auth = true
	default:
		return nil, fmt.Errorf("%w: %v is not (Auth)EnvelopedData", ErrUnexpectedContentType, typ)
	}
	var err error
	if e.outer, err = d.open(tagSeq, "EnvelopedData"); err != nil {
		return nil, err
	}
	version, err := d.readInt("EnvelopedData version")
	if err != nil {
		return nil, err
	}
	// RFC 5652 §6.1 and RFC 5083 §2.1 versions; nothing authenticates
	// them, so anything else is refused rather than ignored.
	if (e.env.auth && version != 0) || (!e.env.auth && version != 0 && (version < 2 || version > 4)) {
		return nil, malformed("EnvelopedData version %d", version)
	}
	if t, err := d.peek(); err != nil {
		return nil, err
	} else if t == tagCtx0Cons { // originatorInfo: not needed for decryption
		if err := d.skip(0); err != nil {
			return nil, err
		}
	}
	risDER, err := d.expect(tagSet, "recipientInfos")
	if err != nil {
		return nil, err
	}
	s := cryptobyte.String(risDER)
	var set cryptobyte.String
	if !s.ReadASN1(&set, cbasn1.SET) {
		return nil, malformed("recipientInfos")
	}
	for !set.Empty() {
		var ri cryptobyte.String
		if !set.ReadAnyASN1Element(&ri, nil) {
			return nil, malformed("recipientInfo")
		}
		e.env.ris = append(e.env.ris, ri)
	}
	if e.eci, err = d.open(tagSeq, "EncryptedContentInfo"); err != nil {
		return nil, err
	}
	if e.env.contentType, err = d.readOID("encrypted content type"); err != nil {
		return nil, err
	}
	algDER, err := d.expect(tagSeq, "content encryption algorithm")
	if err != nil {
		return nil, err
	}
	as := cryptobyte.String(algDER)
	if !readAlgorithmIdentifier(&as, &e.env.alg) || !as.Empty() {
		return nil, malformed("content encryption algorithm")
	}
	more, err := d.more(e.eci)
	if err != nil {
		return nil, err
	}
	if !more {
		return nil, malformed("no encryptedContent")
	}
	if e.octets, err = d.octets(tagCtx0, tagCtx0Cons, "encryptedContent"); err != nil {
		return nil, err
	}
	cek, err := e.env.recoverKey(cert, key)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("%w: content-encryption key: %v", ErrDecrypt, err)
	}
	switch {
	case e.env.alg.oid.Equal(oidAES256GCM):
		if !e.env.auth {
			return nil, fmt.Errorf("%w: GCM in EnvelopedData", ErrUnsupportedAlgorithm)
		}
		nonce, tagLen, err := parseGCMParams(e.env.alg.params)
		if err != nil {
			return nil, err
		}
		e.tagLen = tagLen
		if e.gcm, err = newGCMStream(block, nonce); err != nil {
			return nil, err
		}
	case e.env.alg.oid.Equal(oidAES256CBC):
		if e.env.auth {
			return nil, fmt.Errorf("%w: CBC in AuthEnvelopedData", ErrUnsupportedAlgorithm)
		}
		var iv []byte
		if rest, err := asn1.Unmarshal(e.env.alg.params, &iv); err != nil || len(rest) != 0 || len(iv) != aes.BlockSize {
			return nil, fmt.Errorf("%w: CBC IV", ErrMalformed)
		}
		e.cbc = cipher.NewCBCDecrypter(block, iv)
	default:
		return nil, fmt.Errorf("%w: content encryption %v", ErrUnsupportedAlgorithm, e.env.alg.oid)
	}
	return e, nil
}

func (e *envelopeReader) Read(p []byte) (int, error) {
	for len(e.out) == 0 {
		if e.err != nil {
			return 0, e.err
		}
		if e.done {
			e.err = io.EOF
			return 0, io.EOF
		}
		if err := e.fill(); err != nil {
			e.err = err
		}
	}
	n := copy(p, e.out)
	e.out = e.out[n:]
	return n, nil
}

// fill decrypts the next piece of ciphertext into e.out.
func (e *envelopeReader) fill() error {
	k := copy(e.buf, e.hold)
	n, err := io.ReadAtLeast(e.octets, e.buf[k:ChunkSize+k], 1)
	atEnd := err == io.EOF || err == io.ErrUnexpectedEOF
	if err != nil && !atEnd {
		return err
	}
	e.total += int64(n)
	data := e.buf[:k+n]
	if e.gcm != nil {
		if err := e.gcm.open(data); err != nil {
			return err
		}
		e.out = data
	} else {
		aligned := len(data) - len(data)%aes.BlockSize
		release := aligned - aes.BlockSize
		if atEnd {
			if len(data)%aes.BlockSize != 0 || len(data) == 0 {
				return fmt.Errorf("%w: ciphertext length", ErrDecrypt)
			}
			release = len(data)
		}
		if release < 0 {
			release = 0
		}
		e.cbc.CryptBlocks(data[:release], data[:release])
		e.hold = append(e.hold[:0], data[release:]...)
		e.out = data[:release]
		if atEnd {
			pad := 0
			if len(e.out) > 0 {
				pad = int(e.out[len(e.out)-1])
			}
			if pad == 0 || pad > aes.BlockSize || pad > len(e.out) {
				return fmt.Errorf("%w: padding", ErrDecrypt)
			}
			for _, c := range e.out[len(e.out)-pad:] {
				if int(c) != pad {
					return fmt.Errorf("%w: padding", ErrDecrypt)
				}
			}
			e.out = e.out[:len(e.out)-pad]
		}
	}
	if atEnd {
		if err := e.finish(); err != nil {
			e.out = nil
			return err
		}
		e.done = true
	}
	return nil
}

// blame turns an error found in GCM plaintext into the tag's verdict when
// the tag fails: a damaged message then reads as altered (ErrDecrypt), not
// as whatever its garbled plaintext looked like. It reads the rest of the
// message to get there.
func (e *envelopeReader) blame(err error) error {
	if e.gcm == nil || errors.Is(err, ErrDecrypt) || e.err != nil && !errors.Is(e.err, io.EOF) {
		return err
	}
	if _, derr := io.Copy(io.Discard, e); errors.Is(derr, ErrDecrypt) {
		return derr
	}
	return err
}

// finish reads what follows the ciphertext and checks the GCM tag.
func (e *envelopeReader) finish() error {
	d := e.d
	if err := d.close(e.eci, "EncryptedContentInfo"); err != nil {
		return err
	}
	if e.env.auth {
		t, err := d.peek()
		if err != nil {
			return err
		}
		if t == tagCtx1Cons {
			der, err := d.element()
			if err != nil {
				return err
			}
			s := cryptobyte.String(der)
			var a cryptobyte.String
			if !s.ReadASN1(&a, tagC1) {
				return malformed("authAttrs")
			}
			e.env.authAttrs = append([]byte{}, a...)
		}
		macDER, err := d.expect(tagOctets, "mac")
		if err != nil {
			return err
		}
		ms := cryptobyte.String(macDER)
		var mac cryptobyte.String
		if !ms.ReadASN1(&mac, cbasn1.OCTET_STRING) {
			return malformed("mac")
		}
		if t, ok, err := d.peekIn(e.outer); err != nil {
			return err
		} else if ok && t == tagCtx2Cons { // unauthAttrs
			if err := d.skip(0); err != nil {
				return err
			}
		}
		if !e.env.contentType.Equal(oidData) && e.env.authAttrs == nil {
			return malformed("AuthEnvelopedData of %v without authAttrs", e.env.contentType)
		}
		if len(mac) != e.tagLen {
			return malformed("mac length %d, want %d", len(mac), e.tagLen)
		}
		var aad []byte
		if e.env.authAttrs != nil {
			aad = setOf(e.env.authAttrs)
		}
		if err := e.gcm.check(aad, mac); err != nil {
			return err
		}
	} else if t, ok, err := d.peekIn(e.outer); err != nil {
		return err
	} else if ok && t == tagCtx1Cons { // unprotectedAttrs
		if err := d.skip(0); err != nil {
			return err
		}
	}
	return d.close(e.outer, "EnvelopedData")
}

// hashSet digests content with every algorithm a SignedData names.
type hashSet map[crypto.Hash]hash.Hash

func (hs hashSet) Write(p []byte) (int, error) {
	for _, h := range hs {
		h.Write(p)
	}
	return len(p), nil
}

func (hs hashSet) digest(h crypto.Hash) ([]byte, error) {
	x, ok := hs[h]
	if !ok {
		return nil, fmt.Errorf("%w: digest %v not announced in digestAlgorithms", ErrMalformed, h)
	}
	return x.Sum(nil), nil
}

// contentSink consumes the signed content of the given type.
type contentSink func(ct asn1.ObjectIdentifier, r io.Reader) error

// readSignedData reads SignedData (d positioned after its ContentInfo
// header), passing the encapsulated content (or detached, if there is
// none) through sink while digesting it. It returns the SignedData without
// its content (DER ContentInfo, as a detached signature) and the digests.
func readSignedData(d *decoder, detached io.Reader, sink contentSink) (*signedData, []byte, hashSet, error) {
	outer, err := d.open(tagSeq, "SignedData")
	if err != nil {
		return nil, nil, nil, err
	}
	version, err := d.readInt("SignedData version")
	if err != nil {
		return nil, nil, nil, err
	}
	if version != 1 && (version < 3 || version > 5) { // RFC 5652 §5.1
		return nil, nil, nil, malformed("SignedData version %d", version)
	}
	algsDER, err := d.expect(tagSet, "digestAlgorithms")
	if err != nil {
		return nil, nil, nil, err
	}
	hs := hashSet{}
	s := cryptobyte.String(algsDER)
	var algs cryptobyte.String
	if !s.ReadASN1(&algs, cbasn1.SET) {
		return nil, nil, nil, malformed("digestAlgorithms")
	}
	for !algs.Empty() {
		var a algorithmIdentifier
		if !readAlgorithmIdentifier(&algs, &a) {
			return nil, nil, nil, malformed("digestAlgorithms")
		}
		if h, err := hashFromAlgorithm(a); err == nil && h.Available() && len(hs) < 4 {
			hs[h] = h.New()
		}
	}
	encap, err := d.open(tagSeq, "EncapsulatedContentInfo")
	if err != nil {
		return nil, nil, nil, err
	}
	ct, err := d.readOID("eContentType")
	if err != nil {
		return nil, nil, nil, err
	}
	more, err := d.more(encap)
	if err != nil {
		return nil, nil, nil, err
	}
	if more {
		explicit, err := d.open(tagCtx0Cons, "eContent")
		if err != nil {
			return nil, nil, nil, err
		}
		octets, err := d.octets(tagOctets, tagOctetsCons, "eContent")
		if err != nil {
			return nil, nil, nil, err
		}
		if err := feed(sink, ct, io.TeeReader(octets, hs)); err != nil {
			return nil, nil, nil, err
		}
		if err := d.closeAll("eContent", encap, explicit); err != nil {
			return nil, nil, nil, err
		}
	} else {
		if detached == nil {
			return nil, nil, nil, ErrNoContent
		}
		if err := feed(sink, ct, io.TeeReader(detached, hs)); err != nil {
			return nil, nil, nil, err
		}
	}
	var rest [][]byte
	for {
		more, err := d.more(outer)
		if err != nil {
			return nil, nil, nil, err
		}
		if !more {
			break
		}
		if len(rest) == 3 {
			return nil, nil, nil, malformed("trailing SignedData fields")
		}
		el, err := d.element()
		if err != nil {
			return nil, nil, nil, err
		}
		rest = append(rest, el)
	}
	// The SignedData without its content, parsed as a detached signature.
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(version)
		b.AddBytes(algsDER)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(ct) })
		for _, el := range rest {
			b.AddBytes(el)
		}
	})
	skeleton := contentInfo(oidSignedData, b.BytesOrPanic())
	sd, err := parseSignedData(skeleton)
	if err != nil {
		return nil, nil, nil, err
	}
	return sd, skeleton, hs, nil
}

// feed runs sink and then requires its reader to be exhausted.
func feed(sink contentSink, ct asn1.ObjectIdentifier, r io.Reader) error {
	if err := sink(ct, r); err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if n != 0 {
		return malformed("%d bytes after the content", n)
	}
	return nil
}

// decompressTo inflates CompressedData (without ContentInfo) from r into w,
// at most max bytes, and returns the inner content type and the size.
func decompressTo(w io.Writer, r io.Reader, max int64) (asn1.ObjectIdentifier, int64, error) {
	d := newDecoder(r)
	ct, n, err := decompressFrom(d, w, max)
	if err != nil {
		return nil, 0, err
	}
	return ct, n, d.atEOF()
}

func decompressFrom(d *decoder, w io.Writer, max int64) (asn1.ObjectIdentifier, int64, error) {
	outer, err := d.open(tagSeq, "CompressedData")
	if err != nil {
		return nil, 0, err
	}
	if _, err := d.readInt("CompressedData version"); err != nil {
		return nil, 0, err
	}
	algDER, err := d.expect(tagSeq, "compression algorithm")
	if err != nil {
		return nil, 0, err
	}
	as := cryptobyte.String(algDER)
	var alg algorithmIdentifier
	if !readAlgorithmIdentifier(&as, &alg) || !as.Empty() {
		return nil, 0, malformed("compression algorithm")
	}
	if !alg.oid.Equal(oidCompressionZlib) || !alg.paramsAbsentOrNull() {
		return nil, 0, fmt.Errorf("%w: compression %v", ErrUnsupportedAlgorithm, alg.oid)
	}
	encap, err := d.open(tagSeq, "EncapsulatedContentInfo")
	if err != nil {
		return nil, 0, err
	}
	ct, err := d.readOID("compressed content type")
	if err != nil {
		return nil, 0, err
	}
	explicit, err := d.open(tagCtx0Cons, "compressed content")
	if err != nil {
		return nil, 0, err
	}
	octets, err := d.octets(tagOctets, tagOctetsCons, "compressed content")
	if err != nil {
		return nil, 0, err
	}
	z, err := zlib.NewReader(octets)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrDecompress, err)
	}
	n, err := copyBuf(w, io.LimitReader(z, max+1))
	if err != nil {
		if isMalformed(err) {
			return nil, 0, err
		}
		return nil, 0, fmt.Errorf("%w: %v", ErrDecompress, err)
	}
	if n > max {
		return nil, 0, fmt.Errorf("%w: content exceeds %d bytes", ErrDecompress, max)
	}
	if err := z.Close(); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrDecompress, err)
	}
	if rest, err := io.Copy(io.Discard, octets); err != nil {
		return nil, 0, err
	} else if rest != 0 {
		return nil, 0, malformed("%d bytes after the compressed stream", rest)
	}
	if err := d.closeAll("CompressedData", outer, encap, explicit); err != nil {
		return nil, 0, err
	}
	return ct, n, nil
}

func isMalformed(err error) bool { return errors.Is(err, ErrMalformed) }

// VerifyStream reads a DER or BER ContentInfo(SignedData) from r, writes
// the signed content to w as it is read and verifies every signer at the
// end, as Verify does (the returned Signed has no Content). For a detached
// signature the content is read from content. What w received is not
// verified unless VerifyStream returns nil.
func VerifyStream(w io.Writer, r io.Reader, content io.Reader, opts VerifyOptions) (*Signed, error) {
	s, err := verifyStream(w, r, content, opts)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return s, nil
}

func verifyStream(w io.Writer, r io.Reader, content io.Reader, opts VerifyOptions) (*Signed, error) {
	d := newDecoder(r)
	typ, fs, err := d.openContentInfo()
	if err != nil {
		return nil, err
	}
	if !typ.Equal(oidSignedData) {
		return nil, fmt.Errorf("%w: got %v, want %v", ErrUnexpectedContentType, typ, oidSignedData)
	}
	sd, _, hs, err := readSignedData(d, content, func(_ asn1.ObjectIdentifier, r io.Reader) error {
		_, err := copyBuf(w, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := d.closeAll("ContentInfo", fs[:]...); err != nil {
		return nil, err
	}
	if err := d.atEOF(); err != nil {
		return nil, err
	}
	return sd.verifyDigest(opts, hs.digest)
}

// DecryptStream reads a DER or BER ContentInfo holding (Auth)EnvelopedData
// from r and writes the id-data content to w as it is decrypted (see
// Decrypt for the keys). GCM content is authenticated only at the end:
// what w received must be discarded unless DecryptStream returns nil.
func DecryptStream(w io.Writer, r io.Reader, cert *x509.Certificate, key crypto.PrivateKey) error {
	err := func() error {
		d := newDecoder(r)
		typ, fs, err := d.openContentInfo()
		if err != nil {
			return err
		}
		e, err := openEnvelope(d, typ, cert, key)
		if err != nil {
			return err
		}
		if !e.env.contentType.Equal(oidData) {
			return fmt.Errorf("%w: encrypted %v; use Open", ErrUnexpectedContentType, e.env.contentType)
		}
		if _, err := copyBuf(w, e); err != nil {
			return err
		}
		if err := d.closeAll("ContentInfo", fs[:]...); err != nil {
			return err
		}
		return d.atEOF()
	}()
	if err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	return nil
}

// DecompressStream reads a DER or BER ContentInfo holding CompressedData
// from r and writes at most maxSize inflated bytes (DefaultMaxDecompressed
// when maxSize <= 0) to w.
func DecompressStream(w io.Writer, r io.Reader, maxSize int64) error {
	if maxSize <= 0 {
		maxSize = DefaultMaxDecompressed
	}
	err := func() error {
		d := newDecoder(r)
		typ, fs, err := d.openContentInfo()
		if err != nil {
			return err
		}
		if !typ.Equal(oidCompressedData) {
			return fmt.Errorf("%w: got %v, want %v", ErrUnexpectedContentType, typ, oidCompressedData)
		}
		if _, _, err := decompressFrom(d, w, maxSize); err != nil {
			return err
		}
		if err := d.closeAll("ContentInfo", fs[:]...); err != nil {
			return err
		}
		return d.atEOF()
	}()
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	return nil
}

// OpenStream reverses ProtectStream (and Protect): it reads the message
// from r, decrypts it with the recipient's key, verifies the signature and
// decompresses, writing the document to w as it goes, in memory
// independent of the document's size. It accepts Protect's nesting and
// the one "openssl cms -sign | openssl cms -encrypt" writes (the
// SignedData ContentInfo encrypted as id-data). w receives unauthenticated
// data: discard it unless OpenStream returns nil.
func OpenStream(w io.Writer, r io.Reader, cert *x509.Certificate, key crypto.PrivateKey, opts OpenOptions) (*Opened, error) {
	o, err := openStream(w, r, cert, key, opts)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	return o, nil
}

func openStream(w io.Writer, r io.Reader, cert *x509.Certificate, key crypto.PrivateKey, opts OpenOptions) (*Opened, error) {
	max := opts.MaxSize
	if max <= 0 {
		max = DefaultMaxDecompressed
	}
	d := newDecoder(r)
	typ, fs, err := d.openContentInfo()
	if err != nil {
		return nil, err
	}
	e, err := openEnvelope(d, typ, cert, key)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	out := &Opened{}
	counted, doc := documentWriter(w, opts)
	inner := newDecoder(e)
	var ifs [2]frame
	switch ct := e.env.contentType; {
	case ct.Equal(oidSignedData):
	case ct.Equal(oidData):
		t, err := inner.peek()
		if err != nil || t != tagSeq {
			return nil, e.blame(fmt.Errorf("%w: the encrypted content is not a signed document", ErrNotSigned))
		}
		var ity asn1.ObjectIdentifier
		ity, ifs, err = inner.openContentInfo()
		if err != nil {
			return nil, e.blame(fmt.Errorf("%w: the encrypted content is not a signed document (%v)", ErrNotSigned, err))
		}
		if !ity.Equal(oidSignedData) {
			return nil, fmt.Errorf("%w: encrypted %v", ErrNotSigned, ity)
		}
		out.AsData = true
	default:
		return nil, fmt.Errorf("%w: encrypted %v, want signed data", ErrUnexpectedContentType, ct)
	}
	sd, skeleton, hs, err := readSignedDocument(inner, counted, max, out)
	if err != nil {
		return nil, e.blame(err)
	}
	if out.AsData {
		if err := inner.closeAll("ContentInfo", ifs[:]...); err != nil {
			return nil, e.blame(err)
		}
	}
	// The end of the plaintext: the tag is checked before io.EOF.
	if err := inner.atEOF(); err != nil {
		return nil, err
	}
	if err := d.closeAll("ContentInfo", fs[:]...); err != nil {
		return nil, err
	}
	if err := d.atEOF(); err != nil {
		return nil, err
	}
	return out, out.finish(opts, sd, skeleton, hs, counted, doc)
}

// documentWriter counts the document and digests it on its way to w.
func documentWriter(w io.Writer, opts OpenOptions) (*countWriter, hashSet) {
	hashes := opts.DocumentHashes
	if len(hashes) == 0 {
		hashes = []crypto.Hash{crypto.SHA256}
	}
	doc := hashSet{}
	for _, h := range hashes {
		doc[h] = h.New()
	}
	return &countWriter{w: io.MultiWriter(w, doc)}, doc
}

// finish verifies the signature and records the document's size and digests.
func (out *Opened) finish(opts OpenOptions, sd *signedData, skeleton []byte, hs hashSet, counted *countWriter, doc hashSet) error {
	vo := opts.Verify
	vo.Content = nil
	var err error
	if out.Signed, err = sd.verifyDigest(vo, hs.digest); err != nil {
		return err
	}
	out.SignedData = skeleton
	out.sd = sd
	out.Size = counted.n
	out.digests = map[crypto.Hash][]byte{}
	for h, x := range doc {
		out.digests[h] = x.Sum(nil)
	}
	return nil
}

// readSignedDocument reads SignedData whose content is the document, as
// is or compressed, and writes the document to w.
func readSignedDocument(d *decoder, w *countWriter, max int64, out *Opened) (*signedData, []byte, hashSet, error) {
	return readSignedData(d, nil, func(ct asn1.ObjectIdentifier, r io.Reader) error {
		switch {
		case ct.Equal(oidData):
			_, err := copyBuf(w, io.LimitReader(r, max+1))
			if err == nil && w.n > max {
				err = fmt.Errorf("%w: content exceeds %d bytes", ErrDecompress, max)
			}
			return err
		case ct.Equal(oidCompressedData):
			out.Compressed = true
			innerType, _, err := decompressTo(w, r, max)
			if err != nil {
				return fmt.Errorf("decompress: %w", err)
			}
			if !innerType.Equal(oidData) {
				return fmt.Errorf("%w: compressed %v", ErrUnexpectedContentType, innerType)
			}
			return nil
		}
		return fmt.Errorf("%w: signed %v", ErrUnexpectedContentType, ct)
	})
}

// OpenSignedStream reads a ContentInfo(SignedData) whose content is a
// document (as is or CompressedData: ProtectStreamOptions.Keep's output,
// or "openssl cms -sign" of a file), writes the document to w and verifies
// the signature, with the result OpenStream gives.
func OpenSignedStream(w io.Writer, r io.Reader, opts OpenOptions) (*Opened, error) {
	o, err := func() (*Opened, error) {
		max := opts.MaxSize
		if max <= 0 {
			max = DefaultMaxDecompressed
		}
		d := newDecoder(r)
		typ, fs, err := d.openContentInfo()
		if err != nil {
			return nil, err
		}
		if !typ.Equal(oidSignedData) {
			return nil, fmt.Errorf("%w: got %v, want %v", ErrUnexpectedContentType, typ, oidSignedData)
		}
		out := &Opened{}
		counted, doc := documentWriter(w, opts)
		sd, skeleton, hs, err := readSignedDocument(d, counted, max, out)
		if err != nil {
			return nil, err
		}
		if err := d.closeAll("ContentInfo", fs[:]...); err != nil {
			return nil, err
		}
		if err := d.atEOF(); err != nil {
			return nil, err
		}
		return out, out.finish(opts, sd, skeleton, hs, counted, doc)
	}()
	if err != nil {
		return nil, fmt.Errorf("open signed: %w", err)
	}
	return o, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// DocumentDigest returns the digest of the opened document with h, one of
// OpenOptions.DocumentHashes (SHA-256 by default).
func (o *Opened) DocumentDigest(h crypto.Hash) ([]byte, error) {
	if o.Content != nil {
		return digest(h, o.Content), nil
	}
	d, ok := o.digests[h]
	if !ok {
		return nil, fmt.Errorf("%w: document digest %v was not computed (OpenOptions.DocumentHashes)", ErrUnsupportedAlgorithm, h)
	}
	return bytes.Clone(d), nil
}
