package cms

import (
	"bufio"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
)

// Streaming BER: the writer side emits indefinite-length constructed
// elements and OCTET STRINGs in chunks of ChunkSize; the reader side walks
// definite and indefinite forms alike, holding in memory only the small
// elements (algorithm identifiers, recipient infos, certificates, signer
// infos; at most maxElement bytes each) and passing content through.

// ChunkSize is the size of the OCTET STRING pieces the streaming writers
// emit (and of their buffers).
const ChunkSize = 64 << 10

// maxElement bounds an element the streaming readers hold in memory.
const maxElement = 4 << 20

var eoc = []byte{0, 0}

// Tags used by the streaming code (all single-byte).
const (
	tagOctets          = 0x04
	tagOctetsCons      = 0x24
	tagSeq             = 0x30
	tagSet             = 0x31
	tagCtx0            = 0x80 // [0] primitive
	tagCtx0Cons        = 0xa0 // [0] constructed
	tagCtx1Cons        = 0xa1
	tagCtx2Cons        = 0xa2
	tagOID             = 0x06
	tagInt             = 0x02
	berIndefiniteMark  = 0x80
	maxStreamNestDepth = 32
)

// header opens an indefinite-length constructed element.
func header(tag byte) []byte { return []byte{tag, berIndefiniteMark} }

func oidElement(oid asn1.ObjectIdentifier) []byte { return mustMarshal(oid) }

// chunker is an io.WriteCloser that writes what it is given as primitive
// OCTET STRINGs of up to ChunkSize bytes (the inside of a constructed
// OCTET STRING); Close writes the rest. transform, if set, is applied to
// each full chunk in place before it is written (encryption).
type chunker struct {
	w         io.Writer
	buf       []byte
	transform func([]byte) error
	hdr       [6]byte
}

func newChunker(w io.Writer, transform func([]byte) error) *chunker {
	return &chunker{w: w, buf: make([]byte, 0, ChunkSize), transform: transform}
}

func (c *chunker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := copy(c.buf[len(c.buf):cap(c.buf)], p)
		c.buf = c.buf[:len(c.buf)+k]
		p = p[k:]
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunker) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	if c.transform != nil {
		if err := c.transform(c.buf); err != nil {
			return err
		}
	}
	if err := c.emit(c.buf); err != nil {
		return err
	}
	c.buf = c.buf[:0]
	return nil
}

// emit writes p as one primitive OCTET STRING, untransformed.
func (c *chunker) emit(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	h := appendLength(append(c.hdr[:0], tagOctets), len(p))
	if _, err := c.w.Write(h); err != nil {
		return err
	}
	_, err := c.w.Write(p)
	return err
}

func (c *chunker) Close() error { return c.flush() }

// writeAll writes each piece in order, stopping at the first error.
func writeAll(w io.Writer, pieces ...[]byte) error {
	for _, p := range pieces {
		if _, err := w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// startContentInfo and endContentInfo write ContentInfo { typ, [0]
// EXPLICIT ... } with indefinite lengths around what is written between.
func startContentInfo(w io.Writer, typ asn1.ObjectIdentifier) error {
	return writeAll(w, header(tagSeq), oidElement(typ), header(tagCtx0Cons))
}

func endContentInfo(w io.Writer) error { return writeAll(w, eoc, eoc) }

// decoder reads BER from a stream.
type decoder struct {
	r   *bufio.Reader
	pos int64
}

func newDecoder(r io.Reader) *decoder {
	if br, ok := r.(*bufio.Reader); ok {
		return &decoder{r: br}
	}
	return &decoder{r: bufio.NewReaderSize(r, ChunkSize)}
}

// frame is an open constructed element.
type frame struct {
	indefinite bool
	end        int64 // position after the element, when definite
}

type berHeader struct {
	tag        byte
	indefinite bool
	length     int64
	size       int // of the identifier and length octets
}

func (h berHeader) constructed() bool { return h.tag&0x20 != 0 }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// eof turns an early end of input into ErrMalformed.
func eof(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return malformed("truncated")
	}
	return err
}

func (d *decoder) readByte() (byte, error) {
	c, err := d.r.ReadByte()
	if err != nil {
		return 0, eof(err)
	}
	d.pos++
	return c, nil
}

func (d *decoder) readFull(p []byte) error {
	n, err := io.ReadFull(d.r, p)
	d.pos += int64(n)
	return eof(err)
}

func (d *decoder) header() (berHeader, error) {
	var h berHeader
	c, err := d.readByte()
	if err != nil {
		return h, err
	}
	if c&0x1f == 0x1f {
		return h, malformed("multi-byte tag %#x", c)
	}
	h.tag = c
	l, err := d.readByte()
	if err != nil {
		return h, err
	}
	h.size = 2
	switch {
	case l == 0x80:
		if !h.constructed() {
			return h, malformed("indefinite length on primitive element %#x", c)
		}
		h.indefinite = true
	case l > 0x80:
		n := int(l & 0x7f)
		if n > 7 {
			return h, malformed("length of %d octets", n)
		}
		for range n {
			b, err := d.readByte()
			if err != nil {
				return h, err
			}
			h.length = h.length<<8 | int64(b)
		}
		h.size += n
		if h.length < 0 {
			return h, malformed("length")
		}
	default:
		h.length = int64(l)
	}
	return h, nil
}

// peek returns the next tag without reading it.
func (d *decoder) peek() (byte, error) {
	b, err := d.r.Peek(1)
	if err != nil {
		return 0, eof(err)
	}
	return b[0], nil
}

// open reads the header of a constructed element with the given tag.
func (d *decoder) open(tag byte, what string) (frame, error) {
	h, err := d.header()
	if err != nil {
		return frame{}, err
	}
	if h.tag != tag {
		return frame{}, malformed("%s: tag %#x, want %#x", what, h.tag, tag)
	}
	return d.frameOf(h), nil
}

func (d *decoder) frameOf(h berHeader) frame {
	if h.indefinite {
		return frame{indefinite: true}
	}
	return frame{end: d.pos + h.length}
}

// more reports whether f has another child; at its end it consumes an
// end-of-contents marker.
func (d *decoder) more(f frame) (bool, error) {
	if !f.indefinite {
		if d.pos > f.end {
			return false, malformed("element overruns its container")
		}
		return d.pos < f.end, nil
	}
	b, err := d.r.Peek(2)
	if err != nil {
		return false, eof(err)
	}
	if b[0] == 0 && b[1] == 0 {
		d.r.Discard(2)
		d.pos += 2
		return false, nil
	}
	return true, nil
}

// peekIn returns the tag of f's next child without reading anything; ok
// is false at f's end (its end-of-contents marker is left unread).
func (d *decoder) peekIn(f frame) (tag byte, ok bool, err error) {
	if !f.indefinite {
		if d.pos >= f.end {
			return 0, false, nil
		}
		t, err := d.peek()
		return t, err == nil, err
	}
	b, err := d.r.Peek(2)
	if err != nil {
		return 0, false, eof(err)
	}
	if b[0] == 0 && b[1] == 0 {
		return 0, false, nil
	}
	return b[0], true, nil
}

// close requires f to have no more children.
func (d *decoder) close(f frame, what string) error {
	more, err := d.more(f)
	if err != nil {
		return err
	}
	if more {
		return malformed("%s: unexpected trailing element", what)
	}
	return nil
}

// element reads one whole element (at most maxElement bytes) and returns
// it as DER.
func (d *decoder) element() ([]byte, error) {
	raw, err := d.raw(nil, 0)
	if err != nil {
		return nil, err
	}
	return toDER(raw)
}

// expect reads one element with the given tag and returns its DER.
func (d *decoder) expect(tag byte, what string) ([]byte, error) {
	t, err := d.peek()
	if err != nil {
		return nil, err
	}
	if t != tag && t != tag|0x20 {
		return nil, malformed("%s: tag %#x", what, t)
	}
	return d.element()
}

// raw appends the BER of one element to out.
func (d *decoder) raw(out []byte, depth int) ([]byte, error) {
	if depth > maxStreamNestDepth {
		return nil, malformed("nesting deeper than %d", maxStreamNestDepth)
	}
	h, err := d.header()
	if err != nil {
		return nil, err
	}
	out = append(out, h.tag)
	if h.indefinite {
		out = append(out, 0x80)
		for {
			b, err := d.r.Peek(2)
			if err != nil {
				return nil, eof(err)
			}
			if b[0] == 0 && b[1] == 0 {
				d.r.Discard(2)
				d.pos += 2
				return append(out, 0, 0), nil
			}
			if out, err = d.raw(out, depth+1); err != nil {
				return nil, err
			}
			if len(out) > maxElement {
				return nil, malformed("element larger than %d bytes", maxElement)
			}
		}
	}
	if h.length > maxElement || int64(len(out))+h.length > maxElement {
		return nil, malformed("element larger than %d bytes", maxElement)
	}
	out = appendLength(out, int(h.length))
	start := len(out)
	out = append(out, make([]byte, h.length)...)
	if err := d.readFull(out[start:]); err != nil {
		return nil, err
	}
	return out, nil
}

// skip reads past one element of any size.
func (d *decoder) skip(depth int) error {
	if depth > maxStreamNestDepth {
		return malformed("nesting deeper than %d", maxStreamNestDepth)
	}
	h, err := d.header()
	if err != nil {
		return err
	}
	if !h.indefinite {
		n, err := d.r.Discard(int(h.length))
		d.pos += int64(n)
		return eof(err)
	}
	for {
		more, err := d.more(frame{indefinite: true})
		if err != nil || !more {
			return err
		}
		if err := d.skip(depth + 1); err != nil {
			return err
		}
	}
}

// octets returns a reader of the content octets of the next element, an
// OCTET STRING (or IMPLICIT tagged one: prim/cons name its two forms) in
// primitive or constructed form, definite or indefinite. The element has
// been read completely when the reader returns io.EOF.
func (d *decoder) octets(prim, cons byte, what string) (io.Reader, error) {
	h, err := d.header()
	if err != nil {
		return nil, err
	}
	o := &octetReader{d: d, what: what}
	switch h.tag {
	case prim:
		o.remaining = h.length
	case cons:
		o.stack = append(o.stack, d.frameOf(h))
	default:
		return nil, malformed("%s: tag %#x", what, h.tag)
	}
	return o, nil
}

// octetReader streams the content of an OCTET STRING in either form.
type octetReader struct {
	d         *decoder
	what      string
	stack     []frame // open constructed levels
	remaining int64   // of the current primitive segment
	err       error
}

func (o *octetReader) Read(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	for o.remaining == 0 {
		if len(o.stack) == 0 {
			o.err = io.EOF
			return 0, io.EOF
		}
		top := o.stack[len(o.stack)-1]
		more, err := o.d.more(top)
		if err != nil {
			o.err = err
			return 0, err
		}
		if !more {
			o.stack = o.stack[:len(o.stack)-1]
			continue
		}
		h, err := o.d.header()
		if err != nil {
			o.err = err
			return 0, err
		}
		switch h.tag {
		case tagOctets:
			o.remaining = h.length
		case tagOctetsCons:
			if len(o.stack) >= maxStreamNestDepth {
				o.err = malformed("%s: nesting too deep", o.what)
				return 0, o.err
			}
			o.stack = append(o.stack, o.d.frameOf(h))
		default:
			o.err = malformed("%s: segment tag %#x", o.what, h.tag)
			return 0, o.err
		}
		if !top.indefinite && o.remaining > top.end-o.d.pos {
			o.err = malformed("%s: segment overruns its container", o.what)
			return 0, o.err
		}
	}
	if int64(len(p)) > o.remaining {
		p = p[:o.remaining]
	}
	n, err := o.d.r.Read(p)
	o.d.pos += int64(n)
	o.remaining -= int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = malformed("%s: truncated", o.what)
		}
		o.err = err
		return n, err
	}
	return n, nil
}

// readOID reads an OBJECT IDENTIFIER element.
func (d *decoder) readOID(what string) (asn1.ObjectIdentifier, error) {
	der, err := d.expect(tagOID, what)
	if err != nil {
		return nil, err
	}
	var oid asn1.ObjectIdentifier
	if rest, err := asn1.Unmarshal(der, &oid); err != nil || len(rest) != 0 {
		return nil, malformed("%s", what)
	}
	return oid, nil
}

// readInt reads a small INTEGER element.
func (d *decoder) readInt(what string) (int64, error) {
	der, err := d.expect(tagInt, what)
	if err != nil {
		return 0, err
	}
	var v int64
	if rest, err := asn1.Unmarshal(der, &v); err != nil || len(rest) != 0 {
		return 0, malformed("%s", what)
	}
	return v, nil
}

// openContentInfo reads a ContentInfo's header up to its content and
// returns the type and the two frames to close after the content.
func (d *decoder) openContentInfo() (asn1.ObjectIdentifier, [2]frame, error) {
	var fs [2]frame
	var err error
	if fs[0], err = d.open(tagSeq, "ContentInfo"); err != nil {
		return nil, fs, err
	}
	typ, err := d.readOID("ContentInfo type")
	if err != nil {
		return nil, fs, err
	}
	if fs[1], err = d.open(tagCtx0Cons, "ContentInfo content"); err != nil {
		return nil, fs, err
	}
	return typ, fs, nil
}

func (d *decoder) closeAll(what string, fs ...frame) error {
	for i := len(fs) - 1; i >= 0; i-- {
		if err := d.close(fs[i], what); err != nil {
			return err
		}
	}
	return nil
}

// atEOF requires the input to end here.
func (d *decoder) atEOF() error {
	if _, err := d.r.Peek(1); err == nil {
		return malformed("trailing data after the message")
	} else if !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
