package cms

import (
	"bytes"
	"compress/zlib"
	"encoding/asn1"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// DefaultMaxDecompressed bounds the inflated size Decompress accepts when the
// caller gives no limit.
const DefaultMaxDecompressed = 256 << 20

// Compress returns a DER ContentInfo holding CompressedData (RFC 3274) with
// the zlib algorithm over id-data content.
func Compress(content []byte) ([]byte, error) {
	der, err := compress(content, oidData)
	if err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	return der, nil
}

func compress(content []byte, contentType asn1.ObjectIdentifier) ([]byte, error) {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	if _, err := w.Write(content); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		algorithmIdentifier{oid: oidCompressionZlib}.add(b)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(contentType)
			b.AddASN1(tagC0, func(b *cryptobyte.Builder) { b.AddASN1OctetString(buf.Bytes()) })
		})
	})
	return contentInfo(oidCompressedData, b.BytesOrPanic()), nil
}

// Decompress returns the content of a DER or BER ContentInfo holding
// CompressedData. It refuses to inflate beyond maxSize bytes
// (DefaultMaxDecompressed when maxSize <= 0).
func Decompress(der []byte, maxSize int64) ([]byte, error) {
	_, content, err := decompress(der, maxSize)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	return content, nil
}

func decompress(der []byte, maxSize int64) (asn1.ObjectIdentifier, []byte, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxDecompressed
	}
	inner, err := expectContentInfo(der, oidCompressedData)
	if err != nil {
		return nil, nil, err
	}
	s := cryptobyte.String(inner)
	var seq, encap, explicit, data cryptobyte.String
	var version int64
	var alg algorithmIdentifier
	var ct asn1.ObjectIdentifier
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() ||
		!seq.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) ||
		!readAlgorithmIdentifier(&seq, &alg) ||
		!seq.ReadASN1(&encap, cbasn1.SEQUENCE) || !seq.Empty() ||
		!encap.ReadASN1ObjectIdentifier(&ct) {
		return nil, nil, fmt.Errorf("%w: CompressedData", ErrMalformed)
	}
	if !alg.oid.Equal(oidCompressionZlib) || !alg.paramsAbsentOrNull() {
		return nil, nil, fmt.Errorf("%w: compression %v", ErrUnsupportedAlgorithm, alg.oid)
	}
	if !encap.ReadASN1(&explicit, tagC0) || !explicit.ReadASN1(&data, cbasn1.OCTET_STRING) ||
		!explicit.Empty() || !encap.Empty() {
		return nil, nil, fmt.Errorf("%w: CompressedData without content", ErrMalformed)
	}
	r, err := zlib.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrDecompress, err)
	}
	defer r.Close()
	content, err := io.ReadAll(io.LimitReader(r, maxSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrDecompress, err)
	}
	if int64(len(content)) > maxSize {
		return nil, nil, fmt.Errorf("%w: content exceeds %d bytes", ErrDecompress, maxSize)
	}
	return ct, content, nil
}
