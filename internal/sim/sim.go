// Package sim runs the acquirer and back-office simulators beside the
// appliance, for trying it end to end (`make run`): the acquirer in a
// network namespace of its own on the internal network (host .10 of
// inside's subnet, port 8583), the back office on inside's spool. They are
// external systems, not compartments; the programs are cmd/acquirer and
// cmd/backoffice, and this package only prepares and runs them.
package sim

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Port is the simulated acquirer's port.
const Port = 8583

// Config is what the simulators need from the appliance.
type Config struct {
	BinDir        string // holds the acquirer and backoffice programs
	DataDir       string // the simulators keep their files in DataDir/simulators
	Instance      string // names the acquirer's network namespaces
	InsideAddress string // inside's address on the internal network (a prefix)
	Spool         string // the back office's spool, shared with inside
	SpoolUID      int    // the back office runs as inside's uid and gid (as root)
	SpoolGID      int
	Log           *slog.Logger
}

// Acquirer is the simulated acquirer as payment is configured for it.
type Acquirer struct {
	Addr string // host:port on the internal network
	Cert string // its certificate, which payment pins
	Key  string
}

func (c Config) dir() string             { return filepath.Join(c.DataDir, "simulators") }
func (c Config) program(n string) string { return filepath.Join(c.BinDir, n) }

// Prepare checks that the programs exist and makes the simulated acquirer's
// address and certificate.
func Prepare(c Config) (Acquirer, error) {
	for _, n := range []string{"acquirer", "backoffice"} {
		if _, err := os.Stat(c.program(n)); err != nil {
			return Acquirer{}, ErrNoPrograms
		}
	}
	addr, err := acquirerAddr(c.InsideAddress)
	if err != nil {
		return Acquirer{}, err
	}
	if err := os.MkdirAll(c.dir(), 0o700); err != nil {
		return Acquirer{}, fmt.Errorf("simulators dir: %w", err)
	}
	a := c.acquirer(addr)
	out, err := exec.Command(c.program("acquirer"), "-init", "-cert", a.Cert, "-key", a.Key, "-listen", a.Addr).CombinedOutput()
	if err != nil {
		return Acquirer{}, fmt.Errorf("acquirer certificate: %w: %s", err, out)
	}
	return a, nil
}

// acquirer is the simulated acquirer at addr, its files under dir().
func (c Config) acquirer(addr string) Acquirer {
	return Acquirer{Addr: addr, Cert: filepath.Join(c.dir(), "acquirer.pem"), Key: filepath.Join(c.dir(), "acquirer.key")}
}

// acquirerAddr is host .10 of inside's subnet, port Port.
func acquirerAddr(insideAddress string) (string, error) {
	pfx, err := netip.ParsePrefix(insideAddress)
	if err != nil || !pfx.Addr().Is4() {
		return "", ErrNotIPv4
	}
	a := pfx.Masked().Addr().As4()
	a[3] += 10
	return netip.AddrPortFrom(netip.AddrFrom4(a), Port).String(), nil
}

// Run waits until ready reports inside (and so the internal network) up,
// then runs the simulators until ctx ends; acquirer is the address Prepare
// made.
func Run(ctx context.Context, c Config, acquirer string, ready func() bool) {
	a := c.acquirer(acquirer)
	for !ready() {
		if !sleep(ctx, 200*time.Millisecond) {
			return
		}
	}
	progs := []*exec.Cmd{
		exec.CommandContext(ctx, c.program("acquirer"), "-netns", c.Instance+"-acquirer",
			"-internal-netns", c.Instance+"-internal-net", "-listen", a.Addr,
			"-cert", a.Cert, "-key", a.Key,
			"-ledger", filepath.Join(c.dir(), "ledger.jsonl")),
		exec.CommandContext(ctx, c.program("backoffice"), "-spool", c.Spool),
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
		progs[1].SysProcAttr.Credential = &syscall.Credential{Uid: uint32(c.SpoolUID), Gid: uint32(c.SpoolGID), Groups: []uint32{}}
	}
	for _, cmd := range progs {
		if err := cmd.Start(); err != nil {
			c.Log.Error("simulator", "program", cmd.Path, "error", err)
			continue
		}
		c.Log.Info("simulator running", "program", filepath.Base(cmd.Path), "pid", cmd.Process.Pid)
	}
	for _, cmd := range progs {
		if cmd.Process != nil {
			if err := cmd.Wait(); err != nil && ctx.Err() == nil {
				c.Log.Error("simulator stopped", "program", filepath.Base(cmd.Path), "error", err)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
