package cms

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// Format is how a CMS message is written down.
type Format string

const (
	// FormatDER is binary DER or BER ("openssl cms -outform DER").
	FormatDER Format = "DER"
	// FormatPEM is base64 between -----BEGIN CMS----- (or PKCS7) lines
	// ("-outform PEM").
	FormatPEM Format = "PEM"
	// FormatSMIME is an S/MIME entity with a base64 application/pkcs7-mime
	// body (openssl's default output).
	FormatSMIME Format = "S/MIME"
)

// maxMIMEHeader bounds the S/MIME header block.
const maxMIMEHeader = 64 << 10

// Unarmor detects whether r holds DER/BER, PEM or S/MIME and returns a
// reader of the binary message, decoding base64 as it is read.
func Unarmor(r io.Reader) (io.Reader, Format, error) {
	br := bufio.NewReaderSize(r, ChunkSize)
	first, err := br.Peek(1)
	if err != nil {
		if err == io.EOF {
			return nil, "", fmt.Errorf("%w: empty input", ErrMalformed)
		}
		return nil, "", err
	}
	if first[0] == tagSeq {
		return br, FormatDER, nil
	}
	line, err := readLine(br)
	if err != nil {
		return nil, "", err
	}
	if strings.HasPrefix(line, "-----BEGIN ") {
		label := strings.TrimSuffix(strings.TrimPrefix(line, "-----BEGIN "), "-----")
		switch label {
		case "CMS", "PKCS7", "PKCS #7 SIGNED DATA":
		default:
			return nil, "", fmt.Errorf("%w: PEM %q, want CMS or PKCS7", ErrUnexpectedContentType, label)
		}
		return base64.NewDecoder(base64.StdEncoding, &lineReader{r: br, end: "-----END "}), FormatPEM, nil
	}
	// S/MIME: header lines up to an empty line, then the body.
	var ctype, encoding string
	var header string
	size := 0
	for {
		if line == "" {
			break
		}
		size += len(line)
		if size > maxMIMEHeader {
			return nil, "", fmt.Errorf("%w: neither DER, PEM nor S/MIME", ErrMalformed)
		}
		if line[0] == ' ' || line[0] == '\t' {
			header += " " + strings.TrimSpace(line)
		} else {
			ctype, encoding = mimeField(header, ctype, encoding)
			header = line
		}
		if line, err = readLine(br); err != nil {
			return nil, "", fmt.Errorf("%w: neither DER, PEM nor S/MIME", ErrMalformed)
		}
	}
	ctype, encoding = mimeField(header, ctype, encoding)
	mediaType := strings.ToLower(strings.TrimSpace(strings.SplitN(ctype, ";", 2)[0]))
	switch mediaType {
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
	case "":
		return nil, "", fmt.Errorf("%w: neither DER, PEM nor S/MIME", ErrMalformed)
	case "multipart/signed":
		return nil, "", fmt.Errorf("%w: S/MIME multipart/signed (a clear-signed message, not encrypted); sign with -nodetach", ErrUnexpectedContentType)
	default:
		return nil, "", fmt.Errorf("%w: S/MIME %s, want application/pkcs7-mime", ErrUnexpectedContentType, mediaType)
	}
	if e := strings.ToLower(strings.TrimSpace(encoding)); e != "base64" {
		return nil, "", fmt.Errorf("%w: S/MIME transfer encoding %q, want base64", ErrUnsupportedAlgorithm, e)
	}
	return base64.NewDecoder(base64.StdEncoding, &lineReader{r: br, end: "--", blankEnds: true}), FormatSMIME, nil
}

func mimeField(header, ctype, encoding string) (string, string) {
	name, value, ok := strings.Cut(header, ":")
	if !ok {
		return ctype, encoding
	}
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "content-type":
		ctype = value
	case "content-transfer-encoding":
		encoding = value
	}
	return ctype, encoding
}

// readLine reads one text line (at most ChunkSize bytes) without its end.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return "", fmt.Errorf("%w: neither DER, PEM nor S/MIME", ErrMalformed)
	}
	if err != nil && (err != io.EOF || len(line) == 0) {
		if err == io.EOF {
			return "", fmt.Errorf("%w: truncated text", ErrMalformed)
		}
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// lineReader passes base64 text on, without line ends, up to a line that
// starts with end (or, with blankEnds, an empty line) or the end of input.
type lineReader struct {
	r         *bufio.Reader
	end       string
	blankEnds bool
	buf       []byte
	done      bool
}

func (l *lineReader) Read(p []byte) (int, error) {
	for len(l.buf) == 0 {
		if l.done {
			return 0, io.EOF
		}
		line, err := l.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A long line without breaks: pass it on as it is.
			l.buf = line
			break
		}
		if err != nil && err != io.EOF {
			return 0, err
		}
		if err == io.EOF {
			l.done = true
		}
		t := bytes.TrimRight(line, "\r\n")
		if bytes.HasPrefix(t, []byte(l.end)) || (l.blankEnds && len(bytes.TrimSpace(t)) == 0 && !l.done) {
			l.done = true
			return 0, io.EOF
		}
		l.buf = bytes.TrimSpace(t)
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}
