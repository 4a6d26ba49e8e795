package supervisor

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
)

// The gate agent's sandbox: its own uid, no network, each compartment's
// listener handed over at the fd its config names, the compartments' ids
// mapped and their gids as groups, and only the audit dir (read-write),
// the policy tree and the plugin dirs (read-only) mounted: no admin
// socket, no data dir of a compartment.
func TestGateSpec(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.RunDir, cfg.DataDir = filepath.Join(dir, "run"), filepath.Join(dir, "data")
	s := &Supervisor{cfg: cfg, ids: map[string][2]int{}, gateID: [2]int{cfg.Gate.UID, cfg.Gate.GID}}
	for _, n := range manifest.Names() {
		c := cfg.Compartments[n]
		s.ids[n] = [2]int{c.UID, c.GID}
		os.MkdirAll(s.gateDir(n), 0o700)
		os.MkdirAll(s.pluginDir(n), 0o700)
	}
	os.MkdirAll(s.auditDir(), 0o700)
	if err := s.prepareGate(); err != nil {
		t.Fatal(err)
	}
	defer s.closeGateListeners()
	spec, gc := s.gateSpec()
	if os.Geteuid() == 0 {
		fi, err := os.Stat(s.auditDir())
		if st, ok := fi.Sys().(*syscall.Stat_t); err != nil || !ok || st.Uid != 0 || st.Gid != 64000 || fi.Mode()&(fs.ModePerm|fs.ModeSticky) != 0o770|fs.ModeSticky {
			t.Errorf("audit dir %v %+v: want root, group 64000, 1770", fi.Mode(), fi.Sys())
		}
		for _, n := range manifest.Names() {
			fi, err := os.Stat(s.gateSocket(n))
			if st, ok := fi.Sys().(*syscall.Stat_t); err != nil || !ok || int(st.Uid) != s.ids[n][0] || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s gate socket %v %+v: want the compartment's, 0600", n, fi.Mode(), fi.Sys())
			}
		}
	}

	if spec.UID != 64000 || spec.GID != 64000 || spec.Network.Mode != sandbox.NetNone {
		t.Errorf("uid %d gid %d network %q", spec.UID, spec.GID, spec.Network.Mode)
	}
	if len(spec.ExtraFiles) != len(manifest.Names()) || len(gc.Compartments) != len(manifest.Names()) {
		t.Fatalf("%d listeners for %d compartments", len(spec.ExtraFiles), len(gc.Compartments))
	}
	for i, c := range gc.Compartments {
		if c.GateFD != 3+i {
			t.Errorf("%s: gate fd %d, want %d", c.Name, c.GateFD, 3+i)
		}
		if !slices.Contains(spec.PeerUIDs, uint32(c.UID)) || !slices.Contains(spec.Groups, uint32(c.GID)) {
			t.Errorf("%s: uid %d not mapped or gid %d not a group: %v %v", c.Name, c.UID, c.GID, spec.PeerUIDs, spec.Groups)
		}
		// Only purchasing checks a person's proof; the gate takes only its
		// word about who a call is for.
		if c.ProvesIdentity != (c.Name == "purchasing") {
			t.Errorf("%s: proves identity %v", c.Name, c.ProvesIdentity)
		}
	}
	mounts := map[string]bool{} // source → writable
	for _, m := range spec.Mounts {
		mounts[m.Source] = m.Writable
	}
	if w, ok := mounts[s.auditDir()]; !ok || !w {
		t.Errorf("audit dir not mounted read-write: %v", spec.Mounts)
	}
	for src, w := range mounts {
		switch {
		case src == s.auditDir():
		case w:
			t.Errorf("%s mounted writable", src)
		case filepath.Dir(src) != filepath.Join(cfg.RunDir, "plugin") && src != filepath.Dir(gc.PolicyDir) && src != syslogSocket:
			t.Errorf("%s mounted: neither a plugin dir nor the policy tree", src)
		}
	}
}
