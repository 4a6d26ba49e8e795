package supervisor

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/e2sgate/e2sgate/compartments/manifest"
)

// The SOCKS wiring, privsep style: for every compartment whose manifest
// names a SOCKS filter (SocksVia; today payment through inside) the
// supervisor binds one unix socket that only that caller's uid may connect
// to, in a directory mounted read-only into that caller, and hands the
// listener to the filter's compartment (fd 3 onwards, in start order). The
// listener a connection arrives on names the caller. The filter reports
// every connection as an event line on its stdout; the supervisor stamps it
// with the compartment's name and the gate agent (the one audit writer)
// records it.

func (s *Supervisor) socksDir(caller string) string {
	return filepath.Join(s.cfg.RunDir, "socks", caller)
}

// SocksSocket is the path of caller's SOCKS socket under runDir.
func SocksSocket(runDir, caller string) string {
	return filepath.Join(runDir, "socks", caller, "socks.sock")
}

// prepareSocks binds the SOCKS listeners; they stay open (and are handed to
// every process of the filter's compartment) until the supervisor stops.
func (s *Supervisor) prepareSocks() error {
	s.socks = map[string][]*os.File{}
	for _, m := range manifest.All() {
		if m.SocksVia == "" {
			continue
		}
		caller := m.Name
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
		s.socks[m.SocksVia] = append(s.socks[m.SocksVia], f)
	}
	return nil
}

func (s *Supervisor) closeSocks() {
	for _, fs := range s.socks {
		for _, f := range fs {
			f.Close()
		}
	}
}
