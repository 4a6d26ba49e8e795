package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // substring naming the field; empty: valid
	}{
		{"override listen", "listen: 127.0.0.1:9443\n", ""},
		{"override one compartment field", "compartments:\n  payment:\n    memory_mb: 64\n", ""},
		{"unknown key", "listne: 1.2.3.4:1\n", "listne"},
		{"unknown nested key", "outside:\n  maxbody: 3\n", "maxbody"},
		{"bad version", "version: 2\n", "version"},
		{"bad listen", "listen: nowhere\n", "listen"},
		{"relative run dir", "run_dir: run\n", "run_dir"},
		{"bad runtime", "runtime: docker\n", "runtime"},
		{"exec cannot be required", "runtime: exec\nconfinement: required\n", "runtime"},
		{"bad label", "compartments:\n  payment:\n    label: topsecret\n", "compartments.payment.label"},
		{"root uid", "compartments:\n  payment:\n    uid: 0\n", "compartments.payment.uid"},
		{"shared uid", "compartments:\n  payment:\n    uid: 64002\n", ".uid"},
		{"shared gid", "compartments:\n  payment:\n    gid: 64002\n", ".gid"},
		{"gate uid of a compartment", "gate:\n  uid: 64001\n", ".uid"},
		{"root gate", "gate:\n  uid: 0\n", "gate.uid"},
		{"gate limits", "gate:\n  pids: 1\n", "gate"},
		{"unknown compartment", "compartments:\n  mailer:\n    uid: 64009\n    gid: 64009\n    label: secret\n    memory_mb: 64\n    pids: 10\n    cpu_percent: 5\n", "mailer"},
		{"unknown compartment field", "compartments:\n  payment:\n    memroy_mb: 64\n", "memroy_mb"},
		{"dropped compartment", "compartments:\n  payment: ~\n", "compartments.payment"},
		{"huge body", "outside:\n  max_body: 999999999999\n", "outside.max_body"},
		{"cert without key", "outside:\n  tls_cert: /x.pem\n", "outside.tls_cert"},
		{"not yaml", "listen: [\n", "invalid configuration"},
		{"bad inside address", "internal_network:\n  inside_address: 10.77.0.2\n", "internal_network.inside_address"},
		{"bad allow", "internal_network:\n  allow: [backoffice]\n", "internal_network.allow"},
		{"bad instance", "instance: E2S/../x\n", "instance"},
		{"instance ok", "instance: e2st-42\n", ""},
		{"allow ok", "internal_network:\n  allow: [10.77.0.10:8080]\n", ""},
		{"gate limits override", "gate_limits:\n  per_second: 50\n  burst: 60\n", ""},
		{"gate limits zero", "gate_limits:\n  concurrent: 0\n", "gate_limits"},
		{"gate limits negative rate", "gate_limits:\n  per_second: -1\n", "gate_limits"},
		{"gate limits report too often", "gate_limits:\n  report_interval: 10ms\n", "gate_limits"},
		{"gate limits unknown key", "gate_limits:\n  per_minute: 5\n", "per_minute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := Parse(c, []byte(tt.yaml))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrInvalid naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e2sgate.yaml")
	os.WriteFile(p, []byte("runtime: podman\n"), 0o600)
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "runtime") {
		t.Fatalf("err = %v", err)
	}
	c, err := Load("")
	if err != nil || c.Listen != "127.0.0.1:8443" {
		t.Fatalf("defaults: %v %v", c, err)
	}
}

// The defaults derived from the compartments' manifests are the values the
// appliance has always had, and a file overriding one field keeps the rest.
func TestCompartmentDefaults(t *testing.T) {
	want := Compartments{
		"outside":    {UID: 64001, GID: 64001, Label: "restricted:web", MemoryMB: 256, Pids: 128, CPU: 100},
		"purchasing": {UID: 64002, GID: 64002, Label: "confidential:shop", MemoryMB: 256, Pids: 128, CPU: 100},
		"payment":    {UID: 64003, GID: 64003, Label: "confidential:pay", MemoryMB: 128, Pids: 64, CPU: 50},
		"keyhandler": {UID: 64004, GID: 64004, Label: "secret:keys,shop", MemoryMB: 128, Pids: 64, CPU: 50},
		"inside":     {UID: 64005, GID: 64005, Label: "confidential:internal", MemoryMB: 128, Pids: 64, CPU: 50},
	}
	got := Default().Compartments
	if len(got) != len(want) {
		t.Fatalf("compartments %v", got)
	}
	for n, w := range want {
		if *got[n] != *w {
			t.Errorf("%s = %+v, want %+v", n, *got[n], *w)
		}
	}
	c := Default()
	if err := Parse(c, []byte("compartments:\n  payment:\n    memory_mb: 64\n")); err != nil {
		t.Fatal(err)
	}
	p := *want["payment"]
	p.MemoryMB = 64
	if *c.Compartments["payment"] != p || *c.Compartments["inside"] != *want["inside"] {
		t.Fatalf("after override: payment %+v, inside %+v", *c.Compartments["payment"], *c.Compartments["inside"])
	}
}
