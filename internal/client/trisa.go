package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/trisacrypto/trisa/pkg/ivms101"
	generic "github.com/trisacrypto/trisa/pkg/trisa/data/generic/v1beta1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/e2sgate/e2sgate/internal/document/envelope"
	"github.com/e2sgate/e2sgate/internal/document/envelope/pb"
)

// TRISA payloads. A TRISA peer (the reference implementation,
// github.com/trisacrypto/trisa) refuses a sealed envelope whose payload is
// not a serialised trisa.api.v1beta1.Payload: identity as an Any holding
// ivms101.IdentityPayload, transaction as an Any holding (here)
// trisa.data.generic.v1beta1.Transaction, and sent_at. pb.Payload has the
// same field numbers; the Any messages are TRISA's own Go types, so their
// type URLs and encodings are what peers expect.

// TRISAContent is a TRISA payload as JSON.
type TRISAContent struct {
	Identity    json.RawMessage `json:"identity"`
	Transaction json.RawMessage `json:"transaction"`
	SentAt      string          `json:"sent_at"`
	ReceivedAt  string          `json:"received_at,omitempty"`
}

// trisaPayload builds the serialised Payload from IVMS101 identity JSON
// and generic transaction JSON (protobuf JSON: field names as in the
// .proto files or lowerCamelCase; unknown fields refused).
func trisaPayload(identityJSON, transactionJSON []byte, sentAt time.Time) ([]byte, error) {
	strict := protojson.UnmarshalOptions{}
	id := new(ivms101.IdentityPayload)
	if err := strict.Unmarshal(identityJSON, id); err != nil {
		return nil, fmt.Errorf("identity (IVMS101 IdentityPayload JSON): %v: %w", err, ErrBadInput)
	}
	tx := new(generic.Transaction)
	if err := strict.Unmarshal(transactionJSON, tx); err != nil {
		return nil, fmt.Errorf("transaction (TRISA generic Transaction JSON): %v: %w", err, ErrBadInput)
	}
	idAny, err := anypb.New(id)
	if err != nil {
		return nil, err
	}
	txAny, err := anypb.New(tx)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(&pb.Payload{
		Identity: idAny, Transaction: txAny, SentAt: sentAt.UTC().Format(time.RFC3339),
	})
}

// parseTRISAPayload reads a serialised Payload back into JSON, refusing
// anything but a TRISA identity and transaction.
func parseTRISAPayload(b []byte) (*TRISAContent, error) {
	p := new(pb.Payload)
	if err := proto.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("not a TRISA payload: %v: %w", err, ErrNotTRISA)
	}
	if p.GetIdentity() == nil || p.GetTransaction() == nil || p.GetSentAt() == "" {
		return nil, fmt.Errorf("not a TRISA payload (identity, transaction and sent_at are required): %w", ErrNotTRISA)
	}
	id := new(ivms101.IdentityPayload)
	if err := p.GetIdentity().UnmarshalTo(id); err != nil {
		return nil, fmt.Errorf("identity %s: %v: %w", p.GetIdentity().GetTypeUrl(), err, ErrNotTRISA)
	}
	tx := new(generic.Transaction)
	if err := p.GetTransaction().UnmarshalTo(tx); err != nil {
		return nil, fmt.Errorf("transaction %s: %v: %w", p.GetTransaction().GetTypeUrl(), err, ErrNotTRISA)
	}
	mo := protojson.MarshalOptions{UseProtoNames: true}
	idJSON, err := mo.Marshal(id)
	if err != nil {
		return nil, err
	}
	txJSON, err := mo.Marshal(tx)
	if err != nil {
		return nil, err
	}
	return &TRISAContent{Identity: compact(idJSON), Transaction: compact(txJSON), SentAt: p.GetSentAt(), ReceivedAt: p.GetReceivedAt()}, nil
}

// compact removes protojson's deliberately unstable whitespace.
func compact(b []byte) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

// SealTRISA seals a TRISA Payload built from the identity (IVMS101 JSON)
// and transaction (JSON) files for the RSA public key in keyFile (our own
// when empty), as a TRISA peer expects it.
func (c *Client) SealTRISA(keyFile, identityFile, transactionFile, out string) (*SealResult, error) {
	if err := distinct(identityFile, transactionFile, out); err != nil {
		return nil, err
	}
	idJSON, err := readInput(identityFile)
	if err != nil {
		return nil, err
	}
	txJSON, err := readInput(transactionFile)
	if err != nil {
		return nil, err
	}
	payload, err := trisaPayload(idJSON, txJSON, time.Now())
	if err != nil {
		return nil, err
	}
	pub, err := c.sealKey(keyFile)
	if err != nil {
		return nil, err
	}
	env, err := envelope.SealPayload(payload, pub)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	b, err := envelope.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if err := writeOutputs(Output{Path: out, Data: b, Mode: 0o600}); err != nil {
		return nil, err
	}
	c.log.Info("sealed TRISA payload", "identity", identityFile, "transaction", transactionFile, "out", out, "envelope", env.Id)
	return &SealResult{ID: env.Id, PublicKeySignature: env.PublicKeySignature}, nil
}

// UnsealTRISA opens a sealed envelope holding a TRISA Payload and returns
// its identity and transaction as JSON.
func (c *Client) UnsealTRISA(in string) (*TRISAContent, *SealResult, error) {
	clear, env, err := c.unseal(in)
	if err != nil {
		return nil, nil, err
	}
	content, err := parseTRISAPayload(clear.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("unseal %s: %w", in, err)
	}
	return content, &SealResult{ID: clear.ID, PublicKeySignature: env.PublicKeySignature}, nil
}
