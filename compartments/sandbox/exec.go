package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// Exec is the unconfined baseline runtime: each compartment is only its own
// process under its own uid (when the supervisor is root). It enforces no
// namespace, seccomp, Landlock or network layer; the supervisor must only use
// it when the configuration explicitly lowers the confinement requirement.
type Exec struct{}

func (Exec) Name() string { return "exec" }

func (Exec) Start(ctx context.Context, s Spec) (Process, error) {
	cmd := exec.Command(s.Binary, s.Args...)
	cmd.Env = s.Env
	cmd.Stdin = s.Stdin
	cmd.Stdout = s.Stdout
	cmd.Stderr = s.Stderr
	cmd.ExtraFiles = s.ExtraFiles
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	layers := []string{"process"}
	if os.Geteuid() == 0 && s.UID != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: s.UID, Gid: s.GID, Groups: append([]uint32{}, s.Groups...)}
		layers = append(layers, "uid")
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	return &execProcess{cmd: cmd, layers: layers}, nil
}

type execProcess struct {
	cmd    *exec.Cmd
	layers []string
}

func (p *execProcess) Pid() int                   { return p.cmd.Process.Pid }
func (p *execProcess) Wait() error                { return p.cmd.Wait() }
func (p *execProcess) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }
func (p *execProcess) Layers() []string           { return p.layers }
func (p *execProcess) Close() error               { return nil }
