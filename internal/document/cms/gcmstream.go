package cms

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// AES-GCM as a stream (NIST SP 800-38D). crypto/cipher's GCM seals and
// opens whole messages only, and AuthEnvelopedData puts the additional
// data (authAttrs) after the ciphertext, so this file computes GCM in
// pieces from the standard library's accelerated parts:
//
//   - the keystream is cipher.NewCTR from inc32(J0), identical to GCM's
//     counter mode while the low 32 bits do not wrap (checked);
//   - GHASH of a chunk is taken from crypto/cipher's GCM itself: sealing an
//     empty plaintext with the chunk as additional data under a fixed
//     helper nonce yields (GHASH(chunk) ⊕ len)·H ⊕ E(K, J0'); the known
//     parts are removed and the chunks are joined by GHASH's linearity,
//     Y(A‖B) = Y(A)·H^blocks(B) ⊕ Y(B), with one software multiplication
//     in GF(2^128) per chunk.
//
// The tests compare every size and tag length with crypto/cipher's GCM.

// gf128 is an element of GF(2^128) in GCM's bit order (hi holds bytes 0-7).
type gf128 struct{ hi, lo uint64 }

func gfFromBytes(b []byte) gf128 {
	return gf128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:16])}
}

func (x gf128) bytes() []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:], x.lo)
	return b
}

func (x gf128) xor(y gf128) gf128 { return gf128{x.hi ^ y.hi, x.lo ^ y.lo} }

// mul is the GCM multiplication (SP 800-38D algorithm 1).
func (x gf128) mul(y gf128) gf128 {
	var z gf128
	v := y
	for i := 0; i < 128; i++ {
		var bit uint64
		if i < 64 {
			bit = x.hi >> (63 - i) & 1
		} else {
			bit = x.lo >> (127 - i) & 1
		}
		if bit == 1 {
			z = z.xor(v)
		}
		lsb := v.lo & 1
		v.lo = v.lo>>1 | v.hi<<63
		v.hi >>= 1
		if lsb == 1 {
			v.hi ^= 0xe1 << 56
		}
	}
	return z
}

// pow returns x^n.
func (x gf128) pow(n uint64) gf128 {
	r := gf128{hi: 1 << 63} // the multiplicative identity
	for ; n > 0; n >>= 1 {
		if n&1 == 1 {
			r = r.mul(x)
		}
		x = x.mul(x)
	}
	return r
}

// ghashChunk is the size of the pieces handed to crypto/cipher's GHASH.
const ghashChunk = 64 << 10

// ghasher computes Z = Y·H of GHASH over a stream of bytes (without the
// length block), Y = Σ X_i·H^(n+1-i); only the last piece may end off a
// block boundary.
type ghasher struct {
	aead   cipher.AEAD
	h, hk  gf128 // H and H^(ghashChunk/16)
	ej0    gf128 // E(K, helper J0)
	z      gf128
	buf    []byte
	blocks uint64
}

var helperNonce = make([]byte, gcmNonce)

func newGHasher(block cipher.Block) (*ghasher, error) {
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	var hb, j0 [16]byte
	block.Encrypt(hb[:], hb[:])
	j0[15] = 1
	block.Encrypt(j0[:], j0[:])
	g := &ghasher{aead: aead, h: gfFromBytes(hb[:]), ej0: gfFromBytes(j0[:]), buf: make([]byte, 0, ghashChunk)}
	g.hk = g.h.pow(ghashChunk / 16)
	return g, nil
}

func (g *ghasher) write(p []byte) {
	for len(p) > 0 {
		n := copy(g.buf[len(g.buf):cap(g.buf)], p)
		g.buf = g.buf[:len(g.buf)+n]
		p = p[n:]
		if len(g.buf) == cap(g.buf) {
			g.fold(g.hk)
		}
	}
}

// fold absorbs the buffer; hk is H^(blocks in the buffer).
func (g *ghasher) fold(hk gf128) {
	n := len(g.buf)
	if n == 0 {
		return
	}
	tag := g.aead.Seal(nil, helperNonce, nil, g.buf)
	// tag = (Y ⊕ L)·H ⊕ E(J0'), L = bitlen(A) ‖ 0, so Y·H = tag ⊕ E(J0') ⊕ L·H.
	l := gf128{hi: uint64(n) * 8}
	zc := gfFromBytes(tag).xor(g.ej0).xor(l.mul(g.h))
	g.z = g.z.mul(hk).xor(zc)
	g.blocks += uint64((n + 15) / 16)
	g.buf = g.buf[:0]
}

// sum finishes the stream and returns Z and its number of blocks.
func (g *ghasher) sum() (gf128, uint64) {
	if n := len(g.buf); n > 0 {
		g.fold(g.h.pow(uint64((n + 15) / 16)))
	}
	return g.z, g.blocks
}

// gcmStream encrypts or decrypts one GCM message piecewise.
type gcmStream struct {
	block   cipher.Block
	ctr     cipher.Stream
	ghash   *ghasher
	ekj0    []byte // E(K, J0), masks the tag
	size    uint64 // bytes of ciphertext so far
	maxSize uint64 // before the counter's low 32 bits wrap
}

func newGCMStream(block cipher.Block, nonce []byte) (*gcmStream, error) {
	g, err := newGHasher(block)
	if err != nil {
		return nil, err
	}
	var j0 [16]byte
	if len(nonce) == gcmNonce {
		copy(j0[:], nonce)
		j0[15] = 1
	} else {
		// J0 = GHASH(IV ‖ pad ‖ 0^64 ‖ bitlen(IV)), in software: it is short.
		y := gf128{}
		for p := nonce; len(p) > 0; {
			var b [16]byte
			n := copy(b[:], p)
			p = p[n:]
			y = y.xor(gfFromBytes(b[:])).mul(g.h)
		}
		y = y.xor(gf128{lo: uint64(len(nonce)) * 8}).mul(g.h)
		copy(j0[:], y.bytes())
	}
	s := &gcmStream{block: block, ghash: g, ekj0: make([]byte, 16)}
	block.Encrypt(s.ekj0, j0[:])
	low := binary.BigEndian.Uint32(j0[12:])
	// Blocks from inc32(J0) before the low word wraps (cipher.NewCTR
	// would carry into the nonce there); SP 800-38D's own limit is 2^32-2.
	s.maxSize = uint64(0xffffffff-low) * 16
	if s.maxSize > (1<<32-2)*16 {
		s.maxSize = (1<<32 - 2) * 16
	}
	binary.BigEndian.PutUint32(j0[12:], low+1)
	s.ctr = cipher.NewCTR(block, j0[:])
	return s, nil
}

func (s *gcmStream) count(n int) error {
	s.size += uint64(n)
	if s.size > s.maxSize {
		return fmt.Errorf("%w: GCM content longer than %d bytes", ErrUnsupportedAlgorithm, s.maxSize)
	}
	return nil
}

// seal encrypts p in place and absorbs the ciphertext.
func (s *gcmStream) seal(p []byte) error {
	if err := s.count(len(p)); err != nil {
		return err
	}
	s.ctr.XORKeyStream(p, p)
	s.ghash.write(p)
	return nil
}

// open absorbs the ciphertext p and decrypts it in place. The plaintext is
// not authenticated until tag has been checked.
func (s *gcmStream) open(p []byte) error {
	if err := s.count(len(p)); err != nil {
		return err
	}
	s.ghash.write(p)
	s.ctr.XORKeyStream(p, p)
	return nil
}

// tag returns the full 16-byte tag over aad and the ciphertext so far.
func (s *gcmStream) tag(aad []byte) ([]byte, error) {
	zc, c := s.ghash.sum()
	a, err := newGHasher(s.block)
	if err != nil {
		return nil, err
	}
	a.write(aad)
	za, _ := a.sum()
	l := gf128{hi: uint64(len(aad)) * 8, lo: s.size * 8}
	// GHASH(A‖C‖L) = Z_A·H^c ⊕ Z_C ⊕ L·H.
	y := za.mul(s.ghash.h.pow(c)).xor(zc).xor(l.mul(s.ghash.h))
	t := y.bytes()
	subtle.XORBytes(t, t, s.ekj0)
	return t, nil
}

// check compares the message's tag (12 to 16 bytes) in constant time.
func (s *gcmStream) check(aad, mac []byte) error {
	t, err := s.tag(aad)
	if err != nil {
		return err
	}
	if len(mac) < 12 || len(mac) > 16 || subtle.ConstantTimeCompare(t[:len(mac)], mac) != 1 {
		return fmt.Errorf("%w: authentication tag mismatch", ErrDecrypt)
	}
	return nil
}
