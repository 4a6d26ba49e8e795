package supervisor

import (
	"os"
	"slices"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
)

// Adding a compartment is one declaration package and one line in
// compartments/builtins: registering its manifest (what that line does) is
// enough for the config defaults and section, the start order, the sandbox
// spec, the image list, the SOCKS wiring and the link rules to include it.
func TestAddingACompartmentIsOneDeclaration(t *testing.T) {
	m := &manifest.Manifest{
		Name: "mailer", Order: 35, UID: 64009, GID: 64009, Label: "confidential:mail",
		Limits:   manifest.Limits{MemoryMB: 64, Pids: 32, CPUPercent: 20},
		Network:  manifest.NetLoopback,
		SocksVia: "inside",
		Code:     []string{"compartments/mailer"},
	}
	manifest.Register(m)
	t.Cleanup(func() { manifest.Unregister(m.Name) })

	// Config: defaults, its own section, validation, overrides.
	cfg := config.Default()
	if c := cfg.Compartments["mailer"]; c == nil || c.UID != 64009 || c.Label != "confidential:mail" || c.MemoryMB != 64 {
		t.Fatalf("config section %+v", c)
	}
	if err := config.Parse(cfg, []byte("compartments:\n  mailer:\n    pids: 16\n")); err != nil || cfg.Compartments["mailer"].Pids != 16 {
		t.Fatalf("override: %v, %+v", err, cfg.Compartments["mailer"])
	}
	// Start order, and so the image list mkimage builds.
	if got := manifest.Names(); !slices.Equal(got, []string{"keyhandler", "payment", "inside", "mailer", "purchasing", "outside"}) {
		t.Fatalf("start order %v", got)
	}
	if m.Program() != "cmd/mailer" {
		t.Fatalf("program %s", m.Program())
	}
	// Link rules: nobody else may link it, and it may link nobody else.
	if !slices.Contains(manifest.Lookup("purchasing").Forbidden(), "compartments/mailer") ||
		!slices.Contains(m.Forbidden(), "compartments/keyhandler") {
		t.Fatal("link rules do not include the new compartment")
	}

	// Sandbox spec and SOCKS wiring: a listener into inside, its directory
	// mounted read-only, and inside told about the new caller.
	dir := t.TempDir()
	cfg.RunDir, cfg.DataDir, cfg.BinDir = dir+"/run", dir+"/data", dir+"/bin"
	s := &Supervisor{cfg: cfg, binDir: cfg.BinDir, ids: map[string][2]int{}}
	for _, n := range manifest.Names() {
		s.ids[n] = [2]int{os.Getuid(), os.Getgid()}
	}
	if err := s.prepareSocks(); err != nil {
		t.Fatal(err)
	}
	defer s.closeSocks()
	sp, err := s.spec(m)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Name != "mailer" || sp.Label != "confidential:mail" || sp.Binary != dir+"/bin/mailer" ||
		sp.Limits != (sandbox.Limits{MemoryBytes: 64 << 20, Pids: 16, CPUPercent: 20}) ||
		sp.Network.Mode != sandbox.NetLoopback || len(sp.Mounts) != 4 || sp.Mounts[3].Source != s.socksDir("mailer") {
		t.Fatalf("spec %+v", sp)
	}
	in, err := s.spec(manifest.Lookup("inside"))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.ExtraFiles) != 2 {
		t.Fatalf("inside gets %d SOCKS listeners, want 2", len(in.ExtraFiles))
	}
	if got := manifest.SocksCallers("inside"); !slices.Equal(got, []string{"payment", "mailer"}) {
		t.Fatalf("SOCKS callers %v", got)
	}
}
