package cms

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// TestAESKeyWrapRFC3394 uses the known-answer vectors of RFC 3394 §4.
func TestAESKeyWrapRFC3394(t *testing.T) {
	tests := []struct{ name, kek, key, wrapped string }{
		{"128 with 256 KEK", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
			"00112233445566778899AABBCCDDEEFF", "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7"},
		{"256 with 256 KEK", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
			"00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
			"28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kek, _ := hex.DecodeString(tt.kek)
			key, _ := hex.DecodeString(tt.key)
			want, _ := hex.DecodeString(tt.wrapped)
			got, err := aesKeyWrap(kek, key)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("wrap = %X, %v; want %X", got, err, want)
			}
			back, err := aesKeyUnwrap(kek, got)
			if err != nil || !bytes.Equal(back, key) {
				t.Fatalf("unwrap = %X, %v", back, err)
			}
			got[len(got)-1] ^= 1
			if _, err := aesKeyUnwrap(kek, got); err == nil {
				t.Fatal("unwrap accepted a tampered key")
			}
		})
	}
}
