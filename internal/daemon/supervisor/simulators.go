package supervisor

import (
	"context"
	"errors"

	"github.com/e2sgate/e2sgate/internal/sim"
)

// The acquirer and back-office simulators (package sim), for trying the
// appliance end to end (`make run`): with simulators: true (the default),
// no payment.acquirer configured and the programs acquirer and backoffice
// in bin_dir, the supervisor points payment at the simulated acquirer
// (pinned, through the SOCKS filter) and runs both once inside is up. A
// configured acquirer (production, the tests) turns them off.

func (s *Supervisor) simConfig() sim.Config {
	id := s.ids["inside"]
	return sim.Config{BinDir: s.binDir, DataDir: s.cfg.DataDir, Instance: s.cfg.Instance,
		InsideAddress: s.cfg.Internal.InsideAddress, Spool: s.spoolDir(), SpoolUID: id[0], SpoolGID: id[1], Log: s.log}
}

// prepareSimulators decides whether the simulators run and, if so, makes
// the acquirer's certificate and configures payment for it.
func (s *Supervisor) prepareSimulators() {
	if !s.cfg.Simulators || s.cfg.Payment.Acquirer != "" {
		return
	}
	a, err := sim.Prepare(s.simConfig())
	if errors.Is(err, sim.ErrNoPrograms) {
		s.log.Info("simulators not started: " + err.Error())
		return
	}
	if err != nil {
		s.log.Warn("simulators not started", "error", err)
		return
	}
	s.cfg.Payment.Acquirer, s.cfg.Payment.AcquirerCert = a.Addr, a.Cert
	s.simulate = true
	s.log.Warn("SIMULATED acquirer and back office: payments go to a test acquirer, orders to a test back office", "acquirer", a.Addr)
}

// runSimulators runs the simulators once inside (and so the internal
// network) is up, until ctx ends.
func (s *Supervisor) runSimulators(ctx context.Context) {
	if !s.simulate {
		return
	}
	sim.Run(ctx, s.simConfig(), s.cfg.Payment.Acquirer, s.insideRunning)
}

func (s *Supervisor) insideRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.status.Compartments["inside"]
	return c != nil && c.State == Running
}
