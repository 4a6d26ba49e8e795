package supervisor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/gateagent"
)

// The inside compartment's SOCKS filter, privsep style: the supervisor binds
// one unix socket per caller (only payment) that only that caller's uid may
// connect to, in a directory mounted read-only into that caller, and hands
// the listener to inside as fd 3. The listener a connection arrives on
// names the caller. inside reports every connection as an event line on its
// stdout; the supervisor stamps it with the compartment's name and the gate
// agent (the one audit writer) records it.

// socksCallers are the compartments given a SOCKS listener, in fd order.
var socksCallers = []string{"payment"}

func (s *Supervisor) socksDir(caller string) string {
	return filepath.Join(s.cfg.RunDir, "socks", caller)
}

// SocksSocket is the path of caller's SOCKS socket under runDir.
func SocksSocket(runDir, caller string) string {
	return filepath.Join(runDir, "socks", caller, "socks.sock")
}

// prepareSocks binds the SOCKS listeners; they stay open (and are handed to
// every inside process) until the supervisor stops.
func (s *Supervisor) prepareSocks() error {
	for _, caller := range socksCallers {
		dir := s.socksDir(caller)
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("socks dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("socks dir: %w", err)
		}
		p := SocksSocket(s.cfg.RunDir, caller)
		os.Remove(p)
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			return fmt.Errorf("socks listener for %s: %w", caller, err)
		}
		l.SetUnlinkOnClose(false)
		f, err := l.File()
		l.Close()
		if err != nil {
			return err
		}
		if err := os.Chmod(p, 0o600); err != nil {
			return err
		}
		if os.Geteuid() == 0 {
			id := s.ids[caller]
			for _, q := range []string{dir, p} {
				if err := os.Chown(q, id[0], id[1]); err != nil {
					return fmt.Errorf("socks listener for %s: %w", caller, err)
				}
			}
		}
		s.socks = append(s.socks, f)
	}
	return nil
}

func (s *Supervisor) closeSocks() {
	for _, f := range s.socks {
		f.Close()
	}
}

func (s *Supervisor) spoolDir() string {
	if s.cfg.BackOffice.SpoolDir != "" {
		return s.cfg.BackOffice.SpoolDir
	}
	return filepath.Join(s.dataDir("inside"), "spool")
}

// commerceSpec adds to payment's and inside's spec what the SOCKS filter and
// the back-office spool need: their config sections, the socket directory,
// the listeners, the spool.
func (s *Supervisor) commerceSpec(spec *sandbox.Spec) error {
	var cfg any
	switch spec.Name {
	case "payment":
		p := s.cfg.Payment
		c := map[string]any{"socks": SocksSocket(s.cfg.RunDir, "payment"), "timeout_ms": p.Timeout.Milliseconds()}
		if p.Acquirer != "" {
			pem, err := os.ReadFile(p.AcquirerCert)
			if err != nil {
				return fmt.Errorf("payment.acquirer_cert: %w", err)
			}
			c["acquirer"], c["acquirer_cert"] = p.Acquirer, string(pem)
		}
		cfg = c
		spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: s.socksDir("payment")})
	case "inside":
		allow := map[string][]string{"payment": {}}
		if s.cfg.Payment.Acquirer != "" {
			allow["payment"] = []string{s.cfg.Payment.Acquirer}
		}
		cfg = map[string]any{"socks": socksCallers, "allow": allow, "spool": s.spoolDir()}
		spec.ExtraFiles = append(spec.ExtraFiles, s.socks...)
		if s.cfg.BackOffice.SpoolDir != "" {
			if err := os.MkdirAll(s.cfg.BackOffice.SpoolDir, 0o755); err != nil {
				return fmt.Errorf("back_office.spool_dir: %w", err)
			}
			if os.Geteuid() == 0 {
				os.Chown(s.cfg.BackOffice.SpoolDir, s.ids["inside"][0], s.ids["inside"][1])
			}
			spec.Mounts = append(spec.Mounts, sandbox.Mount{Source: s.cfg.BackOffice.SpoolDir, Writable: true})
		}
	default:
		return nil
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	for i, e := range spec.Env {
		if strings.HasPrefix(e, protocol.EnvConfig+"=") {
			spec.Env[i] = protocol.EnvConfig + "=" + string(b)
		}
	}
	return nil
}

// relayOutput copies what a compartment prints after its handshake to our
// log stream, except event lines ({"e2s_event": {...}}), which go to the
// audit log through the gate agent, stamped with the compartment's name
// (never the compartment's claim) and kind "<name>/<kind>".
// clip shortens s to at most n bytes, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

func (s *Supervisor) relayOutput(name string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Bytes()
		var m struct {
			Event *gateagent.Event `json:"e2s_event"`
		}
		if len(line) > 0 && line[0] == '{' && json.Unmarshal(line, &m) == nil && m.Event != nil {
			e := *m.Event
			// A compartment's words are bounded before they reach the
			// audit log: a compromised one cannot flood it with one event.
			e.Kind, e.Reason, e.Detail = clip(e.Kind, 64), clip(e.Reason, 64), clip(e.Detail, 1024)
			e.Compartment, e.Kind = name, name+"/"+e.Kind
			if e.Decision != "allow" {
				e.Decision = "deny"
			}
			s.audit(e)
			continue
		}
		os.Stderr.Write(append(line, '\n'))
	}
	io.Copy(os.Stderr, r)
}
