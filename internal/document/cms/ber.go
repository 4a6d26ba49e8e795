package cms

import (
	"fmt"
)

// maxBERDepth bounds the nesting accepted from BER input.
const maxBERDepth = 64

// toDER re-encodes BER (indefinite lengths, constructed OCTET STRINGs, as
// written by streaming encoders such as "openssl cms -stream") as DER
// lengths, so that the rest of the package can parse with cryptobyte. DER input is
// returned unchanged in content. Trailing data after the first element is an
// error.
func toDER(in []byte) ([]byte, error) {
	out, rest, err := berElement(in, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	return out, nil
}

// berElement converts one element at the start of in and appends it to out.
func berElement(in []byte, depth int, out []byte) ([]byte, []byte, error) {
	if depth > maxBERDepth {
		return nil, nil, fmt.Errorf("nesting deeper than %d", maxBERDepth)
	}
	if len(in) < 2 {
		return nil, nil, fmt.Errorf("truncated element")
	}
	// Identifier octets.
	tagLen := 1
	if in[0]&0x1f == 0x1f {
		for {
			if tagLen >= len(in) || tagLen > 5 {
				return nil, nil, fmt.Errorf("bad tag")
			}
			c := in[tagLen]
			tagLen++
			if c&0x80 == 0 {
				break
			}
		}
	}
	tag := in[:tagLen]
	constructed := in[0]&0x20 != 0
	rest := in[tagLen:]
	if len(rest) == 0 {
		return nil, nil, fmt.Errorf("truncated length")
	}
	// Length octets.
	l := int(rest[0])
	rest = rest[1:]
	indefinite := false
	switch {
	case l == 0x80:
		if !constructed {
			return nil, nil, fmt.Errorf("indefinite length on primitive element")
		}
		indefinite = true
	case l > 0x80:
		n := l & 0x7f
		if n > 4 || n > len(rest) {
			return nil, nil, fmt.Errorf("bad length")
		}
		l = 0
		for _, c := range rest[:n] {
			l = l<<8 | int(c)
		}
		rest = rest[n:]
		if l < 0 || l > len(rest) {
			return nil, nil, fmt.Errorf("length %d exceeds input", l)
		}
	default:
		if l > len(rest) {
			return nil, nil, fmt.Errorf("length %d exceeds input", l)
		}
	}
	if !constructed {
		out = append(out, tag...)
		out = appendLength(out, l)
		out = append(out, rest[:l]...)
		return out, rest[l:], nil
	}
	// Constructed: convert the children into a scratch buffer.
	var body, after []byte
	if indefinite {
		body = rest
	} else {
		body, after = rest[:l], rest[l:]
	}
	var children []byte
	for {
		if indefinite {
			if len(body) >= 2 && body[0] == 0 && body[1] == 0 {
				after = body[2:]
				break
			}
			if len(body) == 0 {
				return nil, nil, fmt.Errorf("missing end-of-contents")
			}
		} else if len(body) == 0 {
			break
		}
		var err error
		children, body, err = berElement(body, depth+1, children)
		if err != nil {
			return nil, nil, err
		}
	}
	if len(tag) == 1 && tag[0] == 0x24 { // constructed OCTET STRING
		data, err := concatOctets(children)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, 0x04)
		out = appendLength(out, len(data))
		return append(out, data...), after, nil
	}
	out = append(out, tag...)
	out = appendLength(out, len(children))
	return append(out, children...), after, nil
}

// concatOctets joins a sequence of DER primitive OCTET STRINGs.
func concatOctets(der []byte) ([]byte, error) {
	var data []byte
	for len(der) > 0 {
		if der[0] != 0x04 {
			return nil, fmt.Errorf("constructed OCTET STRING holds tag %#x", der[0])
		}
		content, rest, ok := splitDER(der)
		if !ok {
			return nil, fmt.Errorf("bad OCTET STRING segment")
		}
		data = append(data, content...)
		der = rest
	}
	return data, nil
}

// splitDER returns the content of the single-byte-tag DER element at the start
// of der and what follows it.
func splitDER(der []byte) (content, rest []byte, ok bool) {
	if len(der) < 2 {
		return nil, nil, false
	}
	l := int(der[1])
	p := 2
	if l&0x80 != 0 {
		n := l & 0x7f
		if n == 0 || n > 4 || len(der) < 2+n {
			return nil, nil, false
		}
		l = 0
		for _, c := range der[2 : 2+n] {
			l = l<<8 | int(c)
		}
		p += n
	}
	if l < 0 || l > len(der)-p {
		return nil, nil, false
	}
	return der[p : p+l], der[p+l:], true
}

func appendLength(out []byte, l int) []byte {
	switch {
	case l < 0x80:
		return append(out, byte(l))
	case l < 0x100:
		return append(out, 0x81, byte(l))
	case l < 0x10000:
		return append(out, 0x82, byte(l>>8), byte(l))
	case l < 0x1000000:
		return append(out, 0x83, byte(l>>16), byte(l>>8), byte(l))
	default:
		return append(out, 0x84, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	}
}
