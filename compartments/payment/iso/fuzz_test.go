package iso

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzUnpack reads any bytes as the acquirer's frame and message: a frame
// is refused or bounded; a message is refused with ErrFormat or parsed, and
// a parsed response packs again to what unpacks the same.
func FuzzUnpack(f *testing.F) {
	at := time.Date(2026, 11, 23, 1, 2, 3, 0, time.UTC)
	req, _ := Request{MTI: MTIAuthRequest, PAN: "4111111111111111", Expiry: "3012", AmountCents: 52605, Currency: "978",
		STAN: "000042", RRN: "0123456789ab", Terminal: "E2SWEB01", Merchant: "E2SGATE00000001", Time: at}.Pack()
	resp, _ := Response{MTI: MTIAuthResponse, STAN: "000042", RRN: "0123456789ab", AuthCode: "654321", ResponseCode: Approved}.Pack()
	for _, m := range [][]byte{req, resp, []byte("0110"), []byte("0100\xff\xff\xff\xff\xff\xff\xff\xff"), nil} {
		var frame bytes.Buffer
		WriteFrame(&frame, m)
		f.Add(frame.Bytes())
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if b, err := ReadFrame(bufio.NewReader(bytes.NewReader(in))); err == nil && (len(b) == 0 || len(b) > maxMessage) {
			t.Fatalf("frame of %d bytes accepted", len(b))
		}
		if len(in) < 2 {
			return
		}
		msg := in[2:] // past the length header, as the acquirer's message
		if _, err := UnpackRequest(msg); err != nil && !errors.Is(err, ErrFormat) {
			t.Fatalf("request refused without ErrFormat: %v", err)
		}
		r, err := UnpackResponse(msg)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("response refused without ErrFormat: %v", err)
			}
			return
		}
		b, err := r.Pack()
		if err != nil {
			return // fields a response of ours never has
		}
		if again, err := UnpackResponse(b); err != nil || again != r {
			t.Fatalf("response %+v packs to what unpacks as %+v, %v", r, again, err)
		}
	})
}
