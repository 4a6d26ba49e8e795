package supervisor

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/sandbox"
)

// spec builds a compartment's sandbox from its manifest and its config
// section: program, ids, environment, the mounts every compartment has and
// the ones it declares, the sockets it is handed, its network and limits,
// and its settings as JSON.
func (s *Supervisor) spec(m *manifest.Manifest) (sandbox.Spec, error) {
	name := m.Name
	c := s.cfg.Compartments[name]
	settings, err := s.settings(m)
	if err != nil {
		return sandbox.Spec{}, err
	}
	spec := sandbox.Spec{
		Name: name, Label: c.Label,
		Binary: filepath.Join(s.binDir, name),
		UID:    uint32(s.ids[name][0]), GID: uint32(s.ids[name][1]),
		Env: []string{
			protocol.Handshake.MagicCookieKey + "=" + protocol.Handshake.MagicCookieValue,
			"PLUGIN_UNIX_SOCKET_DIR=" + s.pluginDir(name),
			"PLUGIN_PROTOCOL_VERSIONS=1",
			pluginSocketGroup(s.ids[name][1]),
			protocol.EnvName + "=" + name,
			protocol.EnvGateSocket + "=" + filepath.Join(s.gateDir(name), "gate.sock"),
			protocol.EnvDataDir + "=" + s.dataDir(name),
			protocol.EnvConfig + "=" + string(settings),
			"TMPDIR=" + s.dataDir(name),
		},
		Mounts: []sandbox.Mount{
			{Source: s.pluginDir(name), Writable: true},
			{Source: s.gateDir(name)},
			{Source: s.dataDir(name), Writable: true},
		},
		Limits: sandbox.Limits{MemoryBytes: c.MemoryMB << 20, Pids: c.Pids, CPUPercent: c.CPU},
		Stderr: os.Stderr,
	}
	for _, sock := range m.Sockets {
		switch sock {
		case manifest.SocketWeb:
			spec.ExtraFiles = append(spec.ExtraFiles, s.web)
		case manifest.SocketSocks:
			spec.ExtraFiles = append(spec.ExtraFiles, s.socks[name]...)
		default:
			return sandbox.Spec{}, fmt.Errorf("%s: unknown socket %q in its manifest", name, sock)
		}
	}
	for _, mnt := range m.Mounts {
		switch mnt {
		case manifest.MountStaticSite:
			spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: s.static})
		case manifest.MountSpool:
			if err := s.mountSpool(&spec); err != nil {
				return sandbox.Spec{}, err
			}
		default:
			return sandbox.Spec{}, fmt.Errorf("%s: unknown mount %q in its manifest", name, mnt)
		}
	}
	if m.SocksVia != "" {
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: s.socksDir(name)})
	}
	switch m.Network {
	case manifest.NetNone:
		spec.Network = sandbox.Network{Mode: sandbox.NetNone}
	case manifest.NetLoopback:
		spec.Network = sandbox.Network{Mode: sandbox.NetLoopback}
	case manifest.NetVeth:
		spec.Network = s.vethNetwork(name)
	default:
		return sandbox.Spec{}, fmt.Errorf("%s: unknown network %q in its manifest", name, m.Network)
	}
	return spec, nil
}

// settings is what the compartment's program reads as its config (JSON),
// built from the config section its manifest names.
func (s *Supervisor) settings(m *manifest.Manifest) ([]byte, error) {
	var cfg any
	switch m.Section {
	case "":
		return []byte("{}"), nil
	case "outside":
		o := s.cfg.Outside
		o.StaticDir = s.static
		cfg = o
	case "payment":
		p := s.cfg.Payment
		c := map[string]any{"socks": SocksSocket(s.cfg.RunDir, m.Name), "timeout_ms": p.Timeout.Milliseconds()}
		if p.Acquirer != "" {
			pem, err := os.ReadFile(p.AcquirerCert)
			if err != nil {
				return nil, fmt.Errorf("payment.acquirer_cert: %w", err)
			}
			c["acquirer"], c["acquirer_cert"] = p.Acquirer, string(pem)
		}
		cfg = c
	case "inside":
		callers := manifest.SocksCallers(m.Name)
		allow := map[string][]string{}
		for _, caller := range callers {
			allow[caller] = s.socksDestinations(caller)
		}
		cfg = map[string]any{"socks": callers, "allow": allow, "spool": s.spoolDir()}
	default:
		return nil, fmt.Errorf("%s: unknown config section %q in its manifest", m.Name, m.Section)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s settings: %w", m.Name, err)
	}
	return b, nil
}

// socksDestinations are the endpoints a SOCKS caller may reach through its
// filter: for the payment section's caller, the acquirer if one is set.
func (s *Supervisor) socksDestinations(caller string) []string {
	if m := manifest.Lookup(caller); m != nil && m.Section == "payment" && s.cfg.Payment.Acquirer != "" {
		return []string{s.cfg.Payment.Acquirer}
	}
	return []string{}
}

// vethNetwork is a veth into the internal network with its connect
// allowlist: the config's internal_network.allow and every destination of
// the SOCKS filter name hosts (validated with the config).
func (s *Supervisor) vethNetwork(name string) sandbox.Network {
	n := sandbox.Network{Mode: sandbox.NetVeth, Address: netip.MustParsePrefix(s.cfg.Internal.InsideAddress)}
	allow := s.cfg.Internal.Allow
	for _, caller := range manifest.SocksCallers(name) {
		allow = append(allow[:len(allow):len(allow)], s.socksDestinations(caller)...)
	}
	for _, a := range allow {
		ap := netip.MustParseAddrPort(a)
		n.Allow = append(n.Allow, sandbox.Endpoint{Prefix: netip.PrefixFrom(ap.Addr(), ap.Addr().BitLen()), Port: ap.Port()})
	}
	return n
}

func (s *Supervisor) spoolDir() string {
	if s.cfg.BackOffice.SpoolDir != "" {
		return s.cfg.BackOffice.SpoolDir
	}
	return filepath.Join(s.dataDir("inside"), "spool")
}

// mountSpool mounts the back-office spool writable when the config puts it
// outside the compartment's data directory (where it is by default).
func (s *Supervisor) mountSpool(spec *sandbox.Spec) error {
	d := s.cfg.BackOffice.SpoolDir
	if d == "" {
		return nil
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("back_office.spool_dir: %w", err)
	}
	if os.Geteuid() == 0 {
		os.Chown(d, s.ids[spec.Name][0], s.ids[spec.Name][1])
	}
	spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: d, Writable: true})
	return nil
}
