package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/gateagent"
)

// The gate agent is not root. The supervisor sets up what it cannot, then
// starts it through the same runtime as a compartment, under its own uid:
//
//	supervisor (root)                         gate agent (gate uid, sandbox)
//	 bind gate/<c>/gate.sock, chown to c's uid    inherits them as fd 3, 4, ...
//	 plugin/<c> 0710, group c's gid               is in every compartment's group,
//	   (c's plugin socket 0660, group c's gid)      so it may connect there only
//	 data/audit 1770, group gate; audit.* its     mounted read-write (admin.log
//	                                                stays root's)
//	 policy tree                                  mounted read-only
//	 runtime.Start(gateSpec) ───────────────────▶ config on stdin, then attachments;
//	                         ◀─── acks on stdout  compartment uids mapped as
//	                                              themselves (SO_PEERCRED checks)
//
// No network interface, no TCP (cgroup BPF, Landlock), no admin socket (not
// mounted), and after setup it confines itself further (gateagent
// confineSelf).

// syslogSocket is where the audit log forwards its records, if it exists.
const syslogSocket = "/dev/log"

// gateName is the gate agent's name as a sandbox (container id, cgroup,
// image, status).
const gateName = "gate"

// gateSocket is where compartment n reaches the gate agent.
func (s *Supervisor) gateSocket(n string) string { return filepath.Join(s.gateDir(n), "gate.sock") }

func (s *Supervisor) auditDir() string { return filepath.Join(s.cfg.DataDir, "audit") }

// prepareGate binds each compartment's gate listener (owned by that
// compartment's uid, mode 0600; the bound sockets outlive gate agent
// restarts) and gives the audit directory to the gate uid.
func (s *Supervisor) prepareGate() error {
	for _, n := range manifest.Names() {
		p := s.gateSocket(n)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("gate socket %s: %w", p, err)
		}
		l, err := net.ListenUnix("unix", &net.UnixAddr{Net: "unix", Name: p})
		if err != nil {
			return fmt.Errorf("gate socket for %s: %w", n, err)
		}
		l.SetUnlinkOnClose(false)
		f, err := l.File()
		l.Close()
		if err != nil {
			return fmt.Errorf("gate socket for %s: %w", n, err)
		}
		s.gateListeners = append(s.gateListeners, f)
		if err := os.Chmod(p, 0o600); err != nil {
			return fmt.Errorf("gate socket for %s: %w", n, err)
		}
		if os.Geteuid() == 0 {
			if err := os.Chown(p, s.ids[n][0], s.ids[n][1]); err != nil {
				return fmt.Errorf("gate socket for %s: %w", n, err)
			}
		}
	}
	return s.chownAudit()
}

func (s *Supervisor) closeGateListeners() {
	for _, f := range s.gateListeners {
		f.Close()
	}
	s.gateListeners = nil
}

// chownAudit lets the gate agent keep its audit log beside the
// supervisor's admin log without reaching it: the directory stays root's,
// mode 1770 with the gate's group (it may create files, and rename or
// remove only its own: sticky), the gate's files (audit.*, the signing key
// included, which both logs use) are the gate uid's, everything else
// (admin.*) root's.
func (s *Supervisor) chownAudit() error {
	if os.Geteuid() != 0 {
		return nil
	}
	dir := s.auditDir()
	if err := os.Chown(dir, 0, s.gateID[1]); err != nil {
		return fmt.Errorf("give audit dir to the gate agent: %w", err)
	}
	if err := os.Chmod(dir, 0o770|fs.ModeSticky); err != nil {
		return fmt.Errorf("give audit dir to the gate agent: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("give audit dir to the gate agent: %w", err)
	}
	for _, e := range ents {
		owner := [2]int{0, 0}
		if strings.HasPrefix(e.Name(), "audit.") {
			owner = s.gateID
		}
		if err := os.Lchown(filepath.Join(dir, e.Name()), owner[0], owner[1]); err != nil {
			return fmt.Errorf("give audit dir to the gate agent: %w", err)
		}
	}
	return nil
}

// gateSpec is the gate agent's sandbox and its config (the first line on
// its stdin): like a compartment's, with no network, the listeners handed
// over, the compartments' plugin directories and the policy tree read-only
// and the audit directory read-write.
func (s *Supervisor) gateSpec() (sandbox.Spec, gateagent.Config) {
	g := s.cfg.Gate
	uid, gid := uint32(s.gateID[0]), uint32(s.gateID[1])
	spec := sandbox.Spec{
		Name: gateName, Label: "gate",
		Binary: s.self, Args: []string{"gate"},
		UID: uid, GID: gid,
		Network:    sandbox.Network{Mode: sandbox.NetNone},
		Limits:     sandbox.Limits{MemoryBytes: g.MemoryMB << 20, Pids: g.Pids, CPUPercent: g.CPU},
		ExtraFiles: s.gateListeners,
		Stderr:     os.Stderr,
		Mounts:     []sandbox.Mount{{Source: s.auditDir(), Writable: true}},
	}
	if fi, err := os.Stat(syslogSocket); err == nil && fi.Mode().Type() == fs.ModeSocket {
		// Audit records go on to syslog (internal/auditlog).
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: syslogSocket})
	}
	gc := gateagent.Config{PolicyDir: s.policyDir(), AuditLog: filepath.Join(s.auditDir(), "audit.log"),
		AuditQuota: s.cfg.AuditQuotaMB << 20,
		Limits: gateagent.Limits{Concurrent: s.cfg.GateLimits.Concurrent, PerSecond: s.cfg.GateLimits.PerSecond,
			Burst: s.cfg.GateLimits.Burst, ReportInterval: s.cfg.GateLimits.ReportInterval}}
	if gc.PolicyDir != "" {
		// The active set is a symlink into versions/ beside it.
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: filepath.Dir(gc.PolicyDir)})
	}
	for i, n := range manifest.Names() {
		c := s.cfg.Compartments[n]
		cuid, cgid := uint32(s.ids[n][0]), uint32(s.ids[n][1])
		gc.Compartments = append(gc.Compartments, gateagent.CompartmentConfig{
			Name: n, Label: c.Label, UID: s.ids[n][0], GID: s.ids[n][1],
			GateSocket: s.gateSocket(n), GateFD: 3 + i,
			PluginDir:      s.pluginDir(n),
			ProvesIdentity: manifest.Lookup(n).ProvesIdentity,
		})
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: s.pluginDir(n)})
		if cuid != uid {
			spec.PeerUIDs = append(spec.PeerUIDs, cuid)
		}
		if cgid != gid {
			spec.PeerGIDs = append(spec.PeerGIDs, cgid)
			spec.Groups = append(spec.Groups, cgid)
		}
	}
	return spec, gc
}

// pluginSocketGroup is the environment that makes a compartment's plugin
// socket 0660 with its own gid (go-plugin), so the gate agent, which is
// in that group, may connect to it.
func pluginSocketGroup(gid int) string { return "PLUGIN_UNIX_SOCKET_GROUP=" + strconv.Itoa(gid) }
