// Package pb holds the generated protobuf types of sealed envelopes
// (envelope.proto, wire-compatible with TRISA's SecureEnvelope).
package pb

// protoc-gen-go is pinned by the tool directive in go.mod.
//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --go_out=. --go_opt=paths=source_relative envelope.proto"
