package client

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/trisacrypto/trisa/pkg/ivms101"
	api "github.com/trisacrypto/trisa/pkg/trisa/api/v1beta1"
	generic "github.com/trisacrypto/trisa/pkg/trisa/data/generic/v1beta1"
	trisaenv "github.com/trisacrypto/trisa/pkg/trisa/envelope"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/e2sgate/e2sgate/internal/document/envelope"
)

const (
	testIdentity = `{"originator": {"originator_persons": [{"natural_person": {"name": {"name_identifiers": [
		{"primary_identifier": "Doe", "secondary_identifier": "Jane", "name_identifier_type": "NATURAL_PERSON_NAME_TYPE_CODE_LEGL"}]}}}],
		"account_numbers": ["bc1qexampleoriginator"]},
	"beneficiary": {"beneficiary_persons": [{"legal_person": {"name": {"name_identifiers": [
		{"legal_person_name": "Widget Supplier Ltd", "legal_person_name_identifier_type": "LEGAL_PERSON_NAME_TYPE_CODE_LEGL"}]}}}]}}`
	testTransaction = `{"txid": "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b", "originator": "bc1qexampleoriginator",
		"beneficiary": "bc1qexamplebeneficiary", "amount": 0.25, "network": "BTC", "timestamp": "2026-12-03T10:00:00Z"}`
)

// TestTRISAPayloadReferencePeer: what seal -trisa seals, TRISA's reference
// implementation opens and validates (identity, transaction, sent_at), and
// what it seals, unseal -trisa reads back; a raw payload is refused by the
// reference peer and by unseal -trisa.
func TestTRISAPayloadReferencePeer(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := trisaPayload([]byte(testIdentity), []byte(testTransaction), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := envelope.SealPayload(payload, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := envelope.Marshal(sealed)
	if err != nil {
		t.Fatal(err)
	}
	msg := new(api.SecureEnvelope)
	if err := proto.Unmarshal(wire, msg); err != nil {
		t.Fatal(err)
	}
	got, reject, err := trisaenv.Open(msg, trisaenv.WithRSAPrivateKey(key))
	if err != nil || reject != nil {
		t.Fatalf("reference peer refused seal -trisa: %v %v", err, reject)
	}
	id := new(ivms101.IdentityPayload)
	tx := new(generic.Transaction)
	if err := got.Identity.UnmarshalTo(id); err != nil {
		t.Fatal(err)
	}
	if err := got.Transaction.UnmarshalTo(tx); err != nil {
		t.Fatal(err)
	}
	if id.Originator.OriginatorPersons[0].GetNaturalPerson().Name.NameIdentifiers[0].PrimaryIdentifier != "Doe" || tx.Amount != 0.25 || tx.Network != "BTC" {
		t.Fatalf("reference peer read %v / %v", id, tx)
	}

	// The other way: the reference peer seals, we read.
	idAny, _ := anypb.New(id)
	txAny, _ := anypb.New(tx)
	theirs, reject, err := trisaenv.Seal(&api.Payload{Identity: idAny, Transaction: txAny, SentAt: time.Now().UTC().Format(time.RFC3339)},
		trisaenv.WithRSAPublicKey(&key.PublicKey))
	if err != nil || reject != nil {
		t.Fatal(err, reject)
	}
	b, _ := proto.Marshal(theirs)
	env, err := envelope.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	clear, err := envelope.Open(env, key)
	if err != nil {
		t.Fatal(err)
	}
	content, err := parseTRISAPayload(clear.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Amount  float64 `json:"amount"`
		Network string  `json:"network"`
	}
	if err := json.Unmarshal(content.Transaction, &back); err != nil || back.Amount != 0.25 || !strings.Contains(string(content.Identity), `"Doe"`) {
		t.Fatalf("unseal -trisa read %s / %s", content.Identity, content.Transaction)
	}

	// A raw payload is what the reference peer refuses, and unseal -trisa too.
	raw, _ := envelope.SealPayload([]byte("just bytes"), &key.PublicKey)
	rb, _ := envelope.Marshal(raw)
	msg = new(api.SecureEnvelope)
	proto.Unmarshal(rb, msg)
	if _, _, err := trisaenv.Open(msg, trisaenv.WithRSAPrivateKey(key)); err == nil {
		t.Fatal("the reference peer accepted a raw payload; seal -trisa would not be needed")
	}
	if _, err := parseTRISAPayload([]byte("just bytes")); !errors.Is(err, ErrNotTRISA) {
		t.Fatalf("raw payload: %v, want ErrNotTRISA", err)
	}
	// Bad input is named.
	for _, bad := range [][2]string{{`{"originator": 1}`, testTransaction}, {testIdentity, `{"txid": "x", "colour": "red"}`}} {
		if _, err := trisaPayload([]byte(bad[0]), []byte(bad[1]), time.Now()); !errors.Is(err, ErrBadInput) {
			t.Fatalf("bad JSON %q: %v, want ErrBadInput", bad, err)
		}
	}
}
