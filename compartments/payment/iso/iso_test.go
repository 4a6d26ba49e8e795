package iso

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestRequestRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 23, 1, 2, 3, 0, time.UTC)
	for _, r := range []Request{
		{MTI: MTIAuthRequest, PAN: "4111111111111111", Expiry: "3012", AmountCents: 52605, Currency: "978",
			STAN: "000042", RRN: "0123456789ab", Terminal: "E2SWEB01", Merchant: "E2SGATE00000001", Time: at},
		{MTI: MTIAdviceRequest, PAN: "5555555555554444", Expiry: "2701", AmountCents: 1, Currency: "840",
			STAN: "999999", RRN: "order-1     ", AuthCode: "123456", Terminal: "E2SWEB01", Merchant: "E2SGATE00000001", Time: at},
		{MTI: MTIReversal, PAN: "4111111111111111", Expiry: "3012", AmountCents: 7, Currency: "978",
			STAN: "000042", RRN: "0123456789ab", Terminal: "E2SWEB01", Merchant: "E2SGATE00000001", Time: at},
	} {
		t.Run(r.MTI, func(t *testing.T) {
			b, err := r.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, []byte(r.MTI)) {
				t.Fatalf("message does not start with its MTI: %q", b[:8])
			}
			got, err := UnpackRequest(b)
			if err != nil {
				t.Fatal(err)
			}
			// Field 7 is MMDDhhmmss: no year.
			if got.Time.Format("0102150405") != r.Time.Format("0102150405") {
				t.Fatalf("transmission time %v, want %v", got.Time, r.Time)
			}
			got.Time = r.Time
			if got != r {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
			}
		})
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, r := range []Response{
		{MTI: MTIAuthResponse, STAN: "000042", RRN: "0123456789ab", AuthCode: "654321", ResponseCode: Approved},
		{MTI: MTIAuthResponse, STAN: "000043", RRN: "0123456789ac", ResponseCode: InsufficientFunds},
		{MTI: MTIAdviceResponse, STAN: "000044", RRN: "0123456789ad", ResponseCode: Approved},
		{MTI: MTIReversalResp, STAN: "000045", RRN: "0123456789ae", ResponseCode: Approved},
	} {
		b, err := r.Pack()
		if err != nil {
			t.Fatal(err)
		}
		got, err := UnpackResponse(b)
		if err != nil || got != r {
			t.Fatalf("round trip %+v: got %+v, %v", r, got, err)
		}
	}
}

func TestRefused(t *testing.T) {
	if _, err := (Request{MTI: "0800"}).Pack(); !errors.Is(err, ErrFormat) {
		t.Fatalf("network management MTI packed: %v", err)
	}
	auth, _ := Response{MTI: MTIAuthResponse, STAN: "1", RRN: "1", ResponseCode: "00"}.Pack()
	if _, err := UnpackRequest(auth); !errors.Is(err, ErrFormat) {
		t.Fatalf("a response parsed as a request: %v", err)
	}
	if _, err := UnpackResponse([]byte("garbage")); !errors.Is(err, ErrFormat) {
		t.Fatalf("garbage parsed: %v", err)
	}
	for _, e := range []string{"1230", "13/30", "1/30", "ab/cd", ""} {
		if _, err := ExpiryYYMM(e); err == nil {
			t.Errorf("expiry %q accepted", e)
		}
	}
	if y, err := ExpiryYYMM("12/30"); err != nil || y != "3012" {
		t.Fatalf("ExpiryYYMM(12/30) = %q, %v", y, err)
	}
}

func TestFraming(t *testing.T) {
	var buf bytes.Buffer
	msg := []byte("0110hello")
	if err := WriteFrame(&buf, msg); err != nil {
		t.Fatal(err)
	}
	if got := buf.Bytes()[:2]; got[0] != 0 || got[1] != byte(len(msg)) {
		t.Fatalf("header %x", got)
	}
	b, err := ReadFrame(bufio.NewReader(&buf))
	if err != nil || !bytes.Equal(b, msg) {
		t.Fatalf("ReadFrame = %q, %v", b, err)
	}
	if _, err := ReadFrame(bufio.NewReader(bytes.NewReader([]byte{0xff, 0xff}))); !errors.Is(err, ErrFormat) {
		t.Fatalf("oversized frame accepted: %v", err)
	}
}
