package acquirer

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/payment/iso"
)

func req(mti, pan string, amount int64, rrn, code string) []byte {
	b, err := iso.Request{MTI: mti, PAN: pan, Expiry: "3012", AmountCents: amount, Currency: "978", STAN: "000001",
		RRN: rrn, AuthCode: code, Terminal: "T1", Merchant: "M1", Time: time.Now()}.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

func TestDecisions(t *testing.T) {
	s := &Server{Cards: DefaultCards(), TimeoutAmount: 99999, TimeoutPAN: "4000000000000077", Ledger: filepath.Join(t.TempDir(), "ledger")}
	answer := func(b []byte) iso.Response {
		t.Helper()
		r, ok := s.Handle(b)
		if !ok {
			t.Fatal("no answer")
		}
		return r
	}
	ok := answer(req(iso.MTIAuthRequest, "4111111111111111", 1000, "rrn000000001", ""))
	if ok.MTI != iso.MTIAuthResponse || ok.ResponseCode != iso.Approved || len(ok.AuthCode) != 6 || ok.RRN != "rrn000000001" {
		t.Fatalf("approval %+v", ok)
	}
	if again := answer(req(iso.MTIAuthRequest, "4111111111111111", 1000, "rrn000000001", "")); again.AuthCode != ok.AuthCode {
		t.Fatalf("a retried authorisation got a new code: %+v", again)
	}
	tests := []struct {
		name string
		msg  []byte
		code string
	}{
		{"over the card's funds", req(iso.MTIAuthRequest, "5555555555554444", 50001, "rrn000000002", ""), iso.InsufficientFunds},
		{"unknown card", req(iso.MTIAuthRequest, "4242424242424242", 1, "rrn000000003", ""), iso.InvalidCard},
		{"capture without authorisation", req(iso.MTIAdviceRequest, "4111111111111111", 1000, "rrn000000009", "123456"), iso.NoOriginal},
		{"capture with the wrong code", req(iso.MTIAdviceRequest, "4111111111111111", 1000, "rrn000000001", "000000"), iso.NoOriginal},
		{"capture", req(iso.MTIAdviceRequest, "4111111111111111", 1000, "rrn000000001", ok.AuthCode), iso.Approved},
		{"capture repeated", req(iso.MTIAdviceRequest, "4111111111111111", 1000, "rrn000000001", ok.AuthCode), iso.Approved},
		{"garbage", []byte("0100garbage"), iso.FormatError},
		{"hold on the small card", req(iso.MTIAuthRequest, "5555555555554444", 40000, "rrn000000006", ""), iso.Approved},
		{"no room for a second", req(iso.MTIAuthRequest, "5555555555554444", 40000, "rrn000000007", ""), iso.InsufficientFunds},
		{"reversal releases the hold", req(iso.MTIReversal, "5555555555554444", 40000, "rrn000000006", ""), iso.Approved},
		{"reversal of nothing", req(iso.MTIReversal, "5555555555554444", 40000, "rrn000000008", ""), iso.Approved},
		{"room again", req(iso.MTIAuthRequest, "5555555555554444", 40000, "rrn000000007", ""), iso.Approved},
	}
	for _, tt := range tests {
		if r := answer(tt.msg); r.ResponseCode != tt.code {
			t.Errorf("%s: response code %s, want %s", tt.name, r.ResponseCode, tt.code)
		}
	}
	for _, b := range [][]byte{req(iso.MTIAuthRequest, "4111111111111111", 99999, "rrn000000004", ""), req(iso.MTIAuthRequest, "4000000000000077", 1, "rrn000000005", "")} {
		if _, ok := s.Handle(b); ok {
			t.Error("a timeout request was answered")
		}
	}
	es, err := ReadLedger(s.Ledger)
	if err != nil {
		t.Fatal(err)
	}
	captures := 0
	for _, e := range es {
		if e.MTI == iso.MTIAdviceRequest && e.ResponseCode == iso.Approved {
			captures++
		}
		if e.RRN == "rrn000000004" || e.RRN == "rrn000000005" {
			t.Errorf("unanswered request in the ledger: %+v", e)
		}
	}
	if captures != 1 {
		t.Fatalf("%d captures in the ledger, want 1", captures)
	}
}
