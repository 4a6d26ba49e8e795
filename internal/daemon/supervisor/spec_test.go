package supervisor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
)

// The specs of the compartments that use the SOCKS filter and the back
// office: their settings, the socket directory, the listeners, the spool,
// the veth allowlist.
func TestSpec(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "acq.pem")
	os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o644)
	cfg := config.Default()
	cfg.RunDir, cfg.DataDir = filepath.Join(dir, "run"), filepath.Join(dir, "data")
	cfg.Payment.Acquirer, cfg.Payment.AcquirerCert = "10.77.0.10:8583", cert
	s := &Supervisor{cfg: cfg, ids: map[string][2]int{}}
	for _, n := range manifest.Names() {
		s.ids[n] = [2]int{os.Getuid(), os.Getgid()}
	}
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
	spec := func(name string) sandbox.Spec {
		t.Helper()
		sp, err := s.spec(manifest.Lookup(name))
		if err != nil {
			t.Fatal(err)
		}
		return sp
	}
	pay := spec("payment")
	m := conf(pay)
	if m["acquirer"] != "10.77.0.10:8583" || !strings.Contains(m["acquirer_cert"].(string), "BEGIN CERTIFICATE") || m["socks"] != SocksSocket(cfg.RunDir, "payment") {
		t.Fatalf("payment config %v", m)
	}
	if len(pay.Mounts) != 4 || pay.Mounts[3].Writable || pay.Mounts[3].Source != filepath.Dir(SocksSocket(cfg.RunDir, "payment")) || pay.Network.Mode != sandbox.NetLoopback {
		t.Fatalf("payment mounts %+v", pay.Mounts)
	}
	in := spec("inside")
	m = conf(in)
	if len(in.ExtraFiles) != 1 || m["allow"].(map[string]any)["payment"].([]any)[0] != "10.77.0.10:8583" || m["spool"] != filepath.Join(cfg.DataDir, "inside", "spool") {
		t.Fatalf("inside spec %v, %d files", m, len(in.ExtraFiles))
	}
	fi, err := os.Stat(SocksSocket(cfg.RunDir, "payment"))
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v", fi, err)
	}
	if n := in.Network; n.Mode != sandbox.NetVeth || len(n.Allow) != 1 || n.Allow[0].Port != 8583 {
		t.Fatalf("inside network %+v", n)
	}
	other := spec("purchasing")
	if len(other.Mounts) != 3 || len(other.ExtraFiles) != 0 || len(conf(other)) != 0 || other.Network.Mode != sandbox.NetLoopback {
		t.Fatalf("purchasing got %+v", other)
	}
}
