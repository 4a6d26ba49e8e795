// Package iso is the card-payment message format between the payment
// compartment and the acquirer: ISO 8583 (1987, ASCII fields, moov-io's
// Spec87ASCII) framed by a 2-byte big-endian length, over TLS.
//
//	payment                                   acquirer
//	  |-- 0100 authorisation request ------------>|  2 PAN, 3, 4 amount, 7, 11 STAN,
//	  |<- 0110 authorisation response ------------|  14 expiry, 37 RRN, 41, 42, 49
//	  |                                           |  (+ 38 auth code, 39 response code)
//	  |-- 0220 financial advice (capture) ------->|  as 0100 + 38 of the authorisation
//	  |<- 0230 advice response -------------------|  39
//	  |-- 0420 reversal advice ------------------>|  as 0100, after a timed-out 0100
//	  |<- 0430 reversal response -----------------|  39 (00 also when nothing was held)
//
// Response codes used: 00 approved, 14 invalid card number, 25 unable to
// locate the original, 51 insufficient funds, 30 format error.
package iso

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/network"
	"github.com/moov-io/iso8583/specs"
)

// Message type indicators.
const (
	MTIAuthRequest    = "0100"
	MTIAuthResponse   = "0110"
	MTIAdviceRequest  = "0220"
	MTIAdviceResponse = "0230"
	MTIReversal       = "0420" // reversal advice: undo an authorisation whose answer never came
	MTIReversalResp   = "0430"
)

// Response codes.
const (
	Approved          = "00"
	InvalidCard       = "14"
	NoOriginal        = "25"
	FormatError       = "30"
	InsufficientFunds = "51"
)

// ErrFormat: a message is not what this protocol sends.
var ErrFormat = errors.New("iso 8583 format error")

// Request is an authorisation (0100) or capture advice (0220).
type Request struct {
	MTI         string
	PAN         string
	Expiry      string // YYMM, as field 14
	AmountCents int64
	Currency    string // ISO 4217 numeric, e.g. "978"
	STAN        string // 6 digits
	RRN         string // 12 characters, the order's retrieval reference
	AuthCode    string // 6 characters; 0220 only: the authorisation's
	Terminal    string // 8 characters
	Merchant    string // 15 characters
	Time        time.Time
}

// Response is a 0110 or 0230.
type Response struct {
	MTI          string
	STAN         string
	RRN          string
	AuthCode     string
	ResponseCode string
}

// Currencies maps the ISO 4217 alphabetic codes payment accepts to their
// numeric codes (field 49).
var Currencies = map[string]string{"EUR": "978", "USD": "840", "GBP": "826", "CHF": "756"}

// ExpiryYYMM turns "MM/YY" (as on the card) into field 14's YYMM.
func ExpiryYYMM(mmyy string) (string, error) {
	mm, yy, ok := strings.Cut(mmyy, "/")
	m, err1 := strconv.Atoi(mm)
	_, err2 := strconv.Atoi(yy)
	if !ok || len(mm) != 2 || len(yy) != 2 || err1 != nil || err2 != nil || m < 1 || m > 12 {
		return "", fmt.Errorf("%w: expiry %q is not MM/YY", ErrFormat, mmyy)
	}
	return yy + mm, nil
}

// Pack builds the ISO 8583 message of r.
func (r Request) Pack() ([]byte, error) {
	if !isRequest(r.MTI) {
		return nil, fmt.Errorf("%w: MTI %q", ErrFormat, r.MTI)
	}
	m := iso8583.NewMessage(specs.Spec87ASCII)
	m.MTI(r.MTI)
	fields := map[int]string{
		2: r.PAN, 3: "000000", 4: fmt.Sprintf("%012d", r.AmountCents),
		7: r.Time.UTC().Format("0102150405"), 11: r.STAN, 14: r.Expiry,
		37: fixed(r.RRN, 12), 41: fixed(r.Terminal, 8), 42: fixed(r.Merchant, 15), 49: r.Currency,
	}
	if r.MTI == MTIAdviceRequest {
		fields[38] = fixed(r.AuthCode, 6)
	}
	for id, v := range fields {
		if err := m.Field(id, v); err != nil {
			return nil, fmt.Errorf("%w: field %d: %v", ErrFormat, id, err)
		}
	}
	b, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("%w: pack %s: %v", ErrFormat, r.MTI, err)
	}
	return b, nil
}

func isRequest(mti string) bool {
	return mti == MTIAuthRequest || mti == MTIAdviceRequest || mti == MTIReversal
}

// fixed pads or cuts v to a fixed-length alphanumeric field's n characters.
func fixed(v string, n int) string { return fmt.Sprintf("%-*.*s", n, n, v) }

// UnpackRequest parses a 0100 or 0220.
func UnpackRequest(b []byte) (Request, error) {
	m := iso8583.NewMessage(specs.Spec87ASCII)
	if err := m.Unpack(b); err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	var r Request
	var err error
	r.MTI, err = m.GetMTI()
	if err != nil || !isRequest(r.MTI) {
		return r, fmt.Errorf("%w: MTI %q is not a request", ErrFormat, r.MTI)
	}
	get := func(id int) string { s, _ := m.GetString(id); return s }
	r.PAN, r.Expiry, r.Currency, r.STAN = get(2), get(14), get(49), get(11)
	r.RRN, r.AuthCode, r.Terminal, r.Merchant = get(37), get(38), get(41), get(42)
	r.AmountCents, err = strconv.ParseInt(get(4), 10, 64)
	if err != nil || r.AmountCents < 0 {
		return r, fmt.Errorf("%w: amount %q", ErrFormat, get(4))
	}
	if t, err := time.Parse("0102150405", get(7)); err == nil {
		r.Time = t
	}
	if r.PAN == "" || r.STAN == "" || r.RRN == "" {
		return r, fmt.Errorf("%w: PAN, STAN and RRN are required", ErrFormat)
	}
	return r, nil
}

// Pack builds the ISO 8583 message of a response.
func (r Response) Pack() ([]byte, error) {
	m := iso8583.NewMessage(specs.Spec87ASCII)
	m.MTI(r.MTI)
	fields := map[int]string{11: r.STAN, 37: r.RRN, 39: r.ResponseCode}
	if r.AuthCode != "" {
		fields[38] = r.AuthCode
	}
	for id, v := range fields {
		if err := m.Field(id, v); err != nil {
			return nil, fmt.Errorf("%w: field %d: %v", ErrFormat, id, err)
		}
	}
	b, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("%w: pack %s: %v", ErrFormat, r.MTI, err)
	}
	return b, nil
}

// UnpackResponse parses a 0110 or 0230.
func UnpackResponse(b []byte) (Response, error) {
	m := iso8583.NewMessage(specs.Spec87ASCII)
	if err := m.Unpack(b); err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	var r Response
	r.MTI, _ = m.GetMTI()
	if r.MTI != MTIAuthResponse && r.MTI != MTIAdviceResponse && r.MTI != MTIReversalResp {
		return r, fmt.Errorf("%w: MTI %q is not a response", ErrFormat, r.MTI)
	}
	r.STAN, _ = m.GetString(11)
	r.RRN, _ = m.GetString(37)
	r.AuthCode, _ = m.GetString(38)
	r.ResponseCode, _ = m.GetString(39)
	if len(r.ResponseCode) != 2 {
		return r, fmt.Errorf("%w: no response code", ErrFormat)
	}
	return r, nil
}

// ResponseMTI is the response type of a request type.
func ResponseMTI(req string) string {
	switch req {
	case MTIAdviceRequest:
		return MTIAdviceResponse
	case MTIReversal:
		return MTIReversalResp
	}
	return MTIAuthResponse
}

// maxMessage bounds what ReadFrame accepts.
const maxMessage = 8192

// WriteFrame writes one length-prefixed message.
func WriteFrame(w io.Writer, msg []byte) error {
	h := network.NewBinary2BytesHeader()
	if err := h.SetLength(len(msg)); err != nil {
		return err
	}
	var buf bytes.Buffer
	h.WriteTo(&buf)
	buf.Write(msg)
	_, err := w.Write(buf.Bytes()) // one write: header and message in one TLS record
	return err
}

// ReadFrame reads one length-prefixed message.
func ReadFrame(r *bufio.Reader) ([]byte, error) {
	h := network.NewBinary2BytesHeader()
	if _, err := h.ReadFrom(r); err != nil {
		return nil, err
	}
	if h.Length() == 0 || h.Length() > maxMessage {
		return nil, fmt.Errorf("%w: frame of %d bytes", ErrFormat, h.Length())
	}
	b := make([]byte, h.Length())
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
