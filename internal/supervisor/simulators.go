package supervisor

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// The acquirer and back-office simulators, for trying the appliance end to
// end (`make run`): with simulators: true (the default), no
// payment.acquirer configured and the programs acquirer and backoffice in
// bin_dir, the supervisor makes the simulated acquirer's certificate,
// points payment at it (pinned, through the SOCKS filter), and once inside
// is up runs the acquirer in a network namespace of its own on the internal
// network (host .10 of inside's subnet, port 8583) and the back office on
// inside's spool. They are external systems run beside the appliance, not
// compartments: the supervisor only starts and stops the programs. A
// configured acquirer (production, the tests) turns them off.

const simulatorPort = 8583

// prepareSimulators decides whether the simulators run and, if so, makes
// the acquirer's certificate and configures payment for it.
func (s *Supervisor) prepareSimulators() {
	if !s.cfg.Simulators || s.cfg.Payment.Acquirer != "" {
		return
	}
	acq, bo := filepath.Join(s.binDir, "acquirer"), filepath.Join(s.binDir, "backoffice")
	for _, p := range []string{acq, bo} {
		if _, err := os.Stat(p); err != nil {
			s.log.Info("simulators not started: no acquirer and backoffice programs beside e2sgated (go build -o bin/ ./cmd/acquirer ./cmd/backoffice)")
			return
		}
	}
	pfx, err := netip.ParsePrefix(s.cfg.Internal.InsideAddress)
	if err != nil || !pfx.Addr().Is4() {
		s.log.Warn("simulators not started: inside_address is not IPv4")
		return
	}
	a := pfx.Masked().Addr().As4()
	a[3] += 10
	addr := netip.AddrPortFrom(netip.AddrFrom4(a), simulatorPort).String()
	dir := filepath.Join(s.cfg.DataDir, "simulators")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.log.Warn("simulators not started", "error", err)
		return
	}
	cert, key := filepath.Join(dir, "acquirer.pem"), filepath.Join(dir, "acquirer.key")
	if out, err := exec.Command(acq, "-init", "-cert", cert, "-key", key, "-listen", addr).CombinedOutput(); err != nil {
		s.log.Warn("simulators not started: acquirer certificate", "error", err, "output", string(out))
		return
	}
	s.cfg.Payment.Acquirer, s.cfg.Payment.AcquirerCert = addr, cert
	s.simulate = true
	s.log.Warn("SIMULATED acquirer and back office: payments go to a test acquirer, orders to a test back office", "acquirer", addr)
}

// runSimulators runs the simulators once inside (and so the internal
// network) is up, until ctx ends.
func (s *Supervisor) runSimulators(ctx context.Context) {
	if !s.simulate {
		return
	}
	for !s.insideRunning() {
		if !sleep(ctx, 200*time.Millisecond) {
			return
		}
	}
	dir := filepath.Join(s.cfg.DataDir, "simulators")
	progs := []*exec.Cmd{
		exec.CommandContext(ctx, filepath.Join(s.binDir, "acquirer"), "-netns", s.cfg.Instance+"-acquirer",
			"-internal-netns", s.cfg.Instance+"-internal-net", "-listen", s.cfg.Payment.Acquirer,
			"-cert", filepath.Join(dir, "acquirer.pem"), "-key", filepath.Join(dir, "acquirer.key"),
			"-ledger", filepath.Join(dir, "ledger.jsonl")),
		exec.CommandContext(ctx, filepath.Join(s.binDir, "backoffice"), "-spool", s.spoolDir()),
	}
	for _, cmd := range progs {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 5 * time.Second
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	}
	// The back office works in a spool the inside compartment can write:
	// it runs as inside's uid, never as root, so a symlink planted there
	// leads nowhere inside could not write already.
	if os.Geteuid() == 0 {
		id := s.ids["inside"]
		progs[1].SysProcAttr.Credential = &syscall.Credential{Uid: uint32(id[0]), Gid: uint32(id[1]), Groups: []uint32{}}
	}
	for _, cmd := range progs {
		if err := cmd.Start(); err != nil {
			s.log.Error("simulator", "program", cmd.Path, "error", err)
			continue
		}
		s.log.Info("simulator running", "program", filepath.Base(cmd.Path), "pid", cmd.Process.Pid)
	}
	for _, cmd := range progs {
		if cmd.Process != nil {
			if err := cmd.Wait(); err != nil && ctx.Err() == nil {
				s.log.Error("simulator stopped", "program", filepath.Base(cmd.Path), "error", err)
			}
		}
	}
}

func (s *Supervisor) insideRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.status.Compartments["inside"]
	return c != nil && c.State == Running
}
