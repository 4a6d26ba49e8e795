package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestUp(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, status, wantErr string
	}{
		{"all running", `{"gate":{"state":"running"},"compartments":{"outside":{"state":"running"},"inside":{"state":"running"}}}`, ""},
		{"one starting", `{"compartments":{"outside":{"state":"running"},"inside":{"state":"starting"}}}`, "not running: inside"},
		{"gate down", `{"gate":{"state":"failed"},"compartments":{"outside":{"state":"running"}}}`, "not running: gate"},
		{"none", `{"compartments":{}}`, "lists no compartment"},
		{"torn", `{"compartments":{"outs`, "read "},
		{"missing", "", "has not written its status"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name+".json")
			if c.status != "" {
				if err := os.WriteFile(p, []byte(c.status), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := Up(p)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Up = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Up = %v, want an error with %q", err, c.wantErr)
			}
		})
	}
}

func TestWaitEndsWithTheContext(t *testing.T) {
	p := filepath.Join(t.TempDir(), "status.json")
	os.WriteFile(p, []byte(`{"compartments":{"outside":{"state":"failed"}}}`), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Wait(ctx, p, time.Millisecond)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "not running: outside") {
		t.Fatalf("Wait = %v", err)
	}
	os.WriteFile(p, []byte(`{"compartments":{"outside":{"state":"running"}}}`), 0o644)
	if err := Wait(context.Background(), p, time.Millisecond); err != nil {
		t.Fatalf("Wait on a running appliance = %v", err)
	}
}
