package supervisor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/config"
)

// Event lines become audit events stamped with the compartment that printed
// them, whatever they claim; everything else is log output.
func TestRelayOutputStampsEvents(t *testing.T) {
	s := &Supervisor{}
	out := strings.Join([]string{
		`{"e2s_event":{"kind":"socks.connect","decision":"allow","reason":"socks.allowed","detail":"caller=payment dest=10.77.0.10:8583"}}`,
		`{"e2s_event":{"compartment":"supervisor","kind":"x","decision":"lowered","reason":"sup.confinement_lowered"}}`,
		`{"level":"INFO","msg":"ordinary log line"}`,
		`not json`,
	}, "\n") + "\n"
	s.relayOutput("inside", strings.NewReader(out))
	want := []gateagent.Event{
		{Compartment: "inside", Kind: "inside/socks.connect", Decision: "allow", Reason: "socks.allowed", Detail: "caller=payment dest=10.77.0.10:8583"},
		{Compartment: "inside", Kind: "inside/x", Decision: "deny", Reason: "sup.confinement_lowered"},
	}
	if len(s.pending) != len(want) {
		t.Fatalf("events %+v", s.pending)
	}
	for i := range want {
		if s.pending[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, s.pending[i], want[i])
		}
	}
}

func TestCommerceSpec(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "acq.pem")
	os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644)
	cfg := config.Default()
	cfg.RunDir, cfg.DataDir = filepath.Join(dir, "run"), filepath.Join(dir, "data")
	cfg.Payment.Acquirer, cfg.Payment.AcquirerCert = "10.77.0.10:8583", cert
	s := &Supervisor{cfg: cfg, ids: map[string][2]int{"payment": {os.Getuid(), os.Getgid()}, "inside": {os.Getuid(), os.Getgid()}}}
	if err := s.prepareSocks(); err != nil {
		t.Fatal(err)
	}
	defer s.closeSocks()

	conf := func(sp sandbox.Spec) map[string]any {
		for _, e := range sp.Env {
			if v, ok := strings.CutPrefix(e, protocol.EnvConfig+"="); ok {
				var m map[string]any
				if err := json.Unmarshal([]byte(v), &m); err != nil {
					t.Fatal(err)
				}
				return m
			}
		}
		t.Fatal("no config")
		return nil
	}
	pay := sandbox.Spec{Name: "payment", Env: []string{protocol.EnvConfig + "={}"}}
	if err := s.commerceSpec(&pay); err != nil {
		t.Fatal(err)
	}
	m := conf(pay)
	if m["acquirer"] != "10.77.0.10:8583" || !strings.Contains(m["acquirer_cert"].(string), "BEGIN CERTIFICATE") || m["socks"] != SocksSocket(cfg.RunDir, "payment") {
		t.Fatalf("payment config %v", m)
	}
	if len(pay.Mounts) != 1 || pay.Mounts[0].Writable || pay.Mounts[0].Source != filepath.Dir(SocksSocket(cfg.RunDir, "payment")) {
		t.Fatalf("payment mounts %+v", pay.Mounts)
	}
	in := sandbox.Spec{Name: "inside", Env: []string{protocol.EnvConfig + "={}"}}
	if err := s.commerceSpec(&in); err != nil {
		t.Fatal(err)
	}
	m = conf(in)
	if len(in.ExtraFiles) != 1 || m["allow"].(map[string]any)["payment"].([]any)[0] != "10.77.0.10:8583" || m["spool"] != filepath.Join(cfg.DataDir, "inside", "spool") {
		t.Fatalf("inside spec %v, %d files", m, len(in.ExtraFiles))
	}
	fi, err := os.Stat(SocksSocket(cfg.RunDir, "payment"))
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v", fi, err)
	}
	if n := s.insideNetwork(); len(n.Allow) != 1 || n.Allow[0].Port != 8583 {
		t.Fatalf("inside network %+v", n)
	}
	other := sandbox.Spec{Name: "purchasing", Env: []string{protocol.EnvConfig + "={}"}}
	if err := s.commerceSpec(&other); err != nil || len(other.Mounts) != 0 || len(other.ExtraFiles) != 0 || other.Env[0] != protocol.EnvConfig+"={}" {
		t.Fatalf("purchasing got %+v (%v)", other, err)
	}
}
