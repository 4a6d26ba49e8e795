package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/e2sgate/e2sgate/internal/daemon/admin"
)

// The texts below reach the operator through e2sctl and the admin audit
// log; they are part of the admin protocol.
func TestPolicyFiles(t *testing.T) {
	tests := []struct {
		args string
		want string // error text; "" for accepted
	}{
		{`{"files":{"gate.rego":"package x","registry.yaml":"version: 1"}}`, ""},
		{`{"files":{}}`, "bad request: no policy files"},
		{`not json`, "bad request: no policy files"},
		{`{"files":{"../gate.rego":""}}`, `bad request: file "../gate.rego": only top-level .rego and .yaml files`},
		{`{"files":{".hidden.rego":""}}`, `bad request: file ".hidden.rego": only top-level .rego and .yaml files`},
		{`{"files":{"run.sh":""}}`, `bad request: file "run.sh": only top-level .rego and .yaml files`},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			files, err := policyFiles(json.RawMessage(tt.args))
			if tt.want == "" {
				if err != nil || len(files) != 2 {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want || !errors.Is(err, admin.ErrBadRequest) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestOperatorErrorsAreBadRequests(t *testing.T) {
	s, _ := openStore(t)
	_, err := badRequest(s.Rollback(context.Background()))
	if !errors.Is(err, admin.ErrBadRequest) || err.Error() != "bad request: no earlier policy set to roll back to" {
		t.Fatalf("rollback: %v", err)
	}
	_, err = badRequest(s.ShadowReport())
	if !errors.Is(err, admin.ErrBadRequest) || err.Error() != "bad request: no shadow policy; start one with e2sctl policy shadow DIR" {
		t.Fatalf("shadow report: %v", err)
	}
	refused := errors.New("disk on fire")
	if _, err := badRequest(0, refused); err != refused {
		t.Fatalf("other errors pass unchanged: %v", err)
	}
}
