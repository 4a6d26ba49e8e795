package cms

import (
	"crypto/rand"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ReceiptRequest is an RFC 2634 §2.7 receipt request, carried as a signed
// attribute of the original message.
type ReceiptRequest struct {
	// ContentIdentifier is the signedContentIdentifier; nil means 32 random bytes.
	ContentIdentifier []byte
	// FirstTierOnly asks only first-tier recipients for receipts
	// (receiptsFrom allOrFirstTier = firstTierRecipients); default all.
	FirstTierOnly bool
	// ReceiptsTo are e-mail addresses (rfc822Name) receipts should go to; at least one.
	ReceiptsTo []string
}

func (rr *ReceiptRequest) encode() ([]byte, error) {
	if len(rr.ReceiptsTo) == 0 {
		return nil, fmt.Errorf("%w: receipt request needs a receiptsTo address", ErrMalformed)
	}
	id := rr.ContentIdentifier
	if id == nil {
		id = make([]byte, 32)
		if _, err := rand.Read(id); err != nil {
			return nil, fmt.Errorf("receipt request identifier: %w", err)
		}
		rr.ContentIdentifier = id
	}
	from := int64(0)
	if rr.FirstTierOnly {
		from = 1
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1OctetString(id)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddBytes(cryptobyteInt(from))
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, to := range rr.ReceiptsTo {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // GeneralNames
					b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddBytes([]byte(to))
					})
				})
			}
		})
	})
	return b.Bytes()
}

// cryptobyteInt returns the content octets of a small non-negative INTEGER.
func cryptobyteInt(v int64) []byte {
	var b cryptobyte.Builder
	b.AddASN1Int64(v)
	return b.BytesOrPanic()[2:]
}
