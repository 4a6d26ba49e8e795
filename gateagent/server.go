package gateagent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/policies"
)

// Config is what the supervisor tells the gate agent process at start.
type Config struct {
	Compartments []CompartmentConfig `json:"compartments"`
	PolicyDir    string              `json:"policy_dir"` // empty: the embedded policies
	AuditLog     string              `json:"audit_log"`
	AuditQuota   int64               `json:"audit_quota"` // bytes; 0: the file system's capacity
	Limits       Limits              `json:"limits"`      // each caller's budget; zero fields: DefaultLimits
}

// CompartmentConfig is one compartment as the gate agent sees it.
type CompartmentConfig struct {
	Name       string `json:"name"`
	Label      string `json:"label"`
	UID        int    `json:"uid"`
	GID        int    `json:"gid"`
	GateSocket string `json:"gate_socket"` // the listener that names this caller
	// GateFD, when set, is that listener already bound by the supervisor
	// and inherited (the confined gate agent may not create or chown it).
	GateFD    int    `json:"gate_fd,omitempty"`
	PluginDir string `json:"plugin_dir"` // where the compartment's plugin socket appears
	// ProvesIdentity: its manifest's; the gate takes its word about a
	// person (Agent.ProveIdentity).
	ProvesIdentity bool `json:"proves_identity,omitempty"`
}

// Control is one message from the supervisor on the gate agent's stdin.
type Control struct {
	Attach *Attachment `json:"attach,omitempty"`
	Event  *Event      `json:"event,omitempty"`
}

// Attachment: a compartment's plugin is up at Addr (Pid), or is gone (Addr
// empty).
type Attachment struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	Pid  int    `json:"pid"`
}

// Event is something below the gate agent that the audit log must hold: a
// kernel layer's denial (cgroup BPF, nftables) or a supervisor decision
// such as lowered confinement. The gate agent writes it as a record.
type Event struct {
	Compartment string `json:"compartment"`
	Kind        string `json:"kind"`   // e.g. "kernel/connect4", "supervisor/confinement"
	Reason      string `json:"reason"` // a reason id from reasons.yaml
	Decision    string `json:"decision"`
	Detail      string `json:"detail"`
	// Origin says who reported it: "compartment" (a line a compartment
	// printed, relayed by the supervisor), "supervisor" (the default: the
	// supervisor or a kernel layer) or "gate" (the gate agent's transport).
	// The audit record keeps it as its "event" field, which a gate decision
	// never has.
	Origin string `json:"origin,omitempty"`
	// Count is how many denials the record stands for when the supervisor
	// aggregated repeats (kernel/seccomp, kernel/landlock); 0 means one.
	Count int `json:"count,omitempty"`
}

// LoadPolicySet loads registry and policy from dir (or the embedded set).
func LoadPolicySet(ctx context.Context, dir string, compartments []string) (*PolicySet, error) {
	var fsys fs.FS = policies.Default
	if dir != "" {
		fsys = os.DirFS(dir)
	}
	reg, err := LoadRegistry(fsys, "registry.yaml", compartments)
	if err != nil {
		return nil, err
	}
	pol, err := LoadPolicy(ctx, fsys)
	if err != nil {
		return nil, err
	}
	return &PolicySet{Registry: reg, Policy: pol}, nil
}

// Run is the gate agent process: it serves one gate listener per
// compartment and attaches to compartments as the supervisor reports them
// on control (JSON lines), until ctx ends or control closes.
//
// Each attachment that succeeds is acknowledged on acks as a JSON line
// (Attachment), so the supervisor reports a compartment as running only
// once calls can reach it.
func Run(ctx context.Context, log *slog.Logger, cfg Config, control io.Reader, acks io.Writer) error {
	names := make([]string, 0, len(cfg.Compartments))
	labels := map[string]string{}
	byName := map[string]CompartmentConfig{}
	var provers []string
	for _, c := range cfg.Compartments {
		names = append(names, c.Name)
		labels[c.Name] = c.Label
		byName[c.Name] = c
		if c.ProvesIdentity {
			provers = append(provers, c.Name)
		}
	}
	set, err := LoadPolicySet(ctx, cfg.PolicyDir, names)
	if err != nil {
		return fmt.Errorf("load policy set: %w", err)
	}
	var agent *Agent // the audit log warns through it once it exists
	var agentReady atomic.Bool
	audit, err := auditlog.OpenWith(cfg.AuditLog, auditlog.Options{Log: log, Quota: cfg.AuditQuota, OnQuota: func(u auditlog.Usage) {
		if agentReady.Load() {
			agent.QuotaWarning(u)
		}
	}})
	if err != nil {
		return err
	}
	defer audit.Close()
	agent = New(log, audit, labels, set)
	agent.ProveIdentity(provers...)
	agent.SetLimits(cfg.Limits)
	defer agent.FlushLimits()
	agentReady.Store(true)

	var servers []*grpc.Server
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	maxMsg := map[string]int{} // each caller's message limit, fixed at start
	for _, c := range cfg.Compartments {
		l, err := listenGate(c)
		if err != nil {
			return err
		}
		maxMsg[c.Name] = maxMessageFor(set.Registry, c.Name)
		s := agent.GateServer(c.Name, maxMsg[c.Name])
		servers = append(servers, s)
		go s.Serve(limitConns(l, log, c.Name, maxConns, func() { agent.limits.Load().refuseConn(c.Name) }))
	}
	if err := confineSelf(log, cfg); err != nil {
		return err
	}
	// Last: its own seccomp allowlist, as gVisor's gofer does after setup.
	// Under runc the sandbox's allowlist is in force already and refuses
	// seccomp(2), so the gate does not ask (the supervisor audits every
	// seccomp denial: an idle appliance must leave none); under runtime
	// exec this is the only filter.
	if seccompActive() {
		log.Info("gate agent keeps its sandbox's seccomp filter")
	} else if err := filterSelf(); err != nil {
		log.Warn("gate agent runs without a seccomp filter", "error", err)
	} else {
		log.Info("gate agent seccomp filter installed")
	}
	log.Info("gate agent ready", "compartments", len(cfg.Compartments), "scripts", len(set.Registry.Scripts))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			next, err := LoadPolicySet(ctx, cfg.PolicyDir, names)
			if err != nil {
				log.Error("policy reload refused; the old policy stays in force", "error", err)
				continue
			}
			for _, c := range cfg.Compartments {
				if need := maxMessageFor(next.Registry, c.Name); need > maxMsg[c.Name] {
					log.Error("the new registry lets a caller send larger bodies than its gate listener accepts until the appliance restarts; larger calls are refused meanwhile",
						"compartment", c.Name, "limit", maxMsg[c.Name], "needed", need)
				}
			}
			agent.SetPolicy(next)
			log.Info("policy reloaded", "scripts", len(next.Registry.Scripts))
		}
	}()

	atts := make(chan Attachment)
	go func() {
		defer close(atts)
		// Only EOF ends the control channel: a line too long or not JSON is
		// logged and skipped, so nothing a compartment gets relayed here
		// can stop the gate agent.
		r := bufio.NewReaderSize(control, 64<<10)
		for {
			line, err := readLine(r, maxControlLine)
			if errors.Is(err, errLineTooLong) {
				log.Error("control message too long; skipped", "limit", maxControlLine)
				continue
			}
			if err != nil {
				return
			}
			var m Control
			if err := json.Unmarshal(line, &m); err != nil {
				log.Error("bad control message", "error", err)
				continue
			}
			if m.Event != nil {
				agent.Record(*m.Event)
			}
			if m.Attach != nil {
				atts <- *m.Attach
			}
		}
	}()
	clients := map[string]*plugin.Client{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case a, ok := <-atts:
			if !ok {
				log.Info("control channel closed; gate agent stops")
				return nil
			}
			agent.Detach(a.Name)
			if old := clients[a.Name]; old != nil {
				dropClient(old)
				delete(clients, a.Name)
			}
			if a.Addr == "" {
				log.Info("compartment detached", "compartment", a.Name)
				continue
			}
			pc, comp, err := agent.attach(ctx, a, byName[a.Name])
			if err != nil {
				log.Error("attach compartment failed", "compartment", a.Name, "error", err)
				continue
			}
			clients[a.Name] = pc
			agent.Attach(a.Name, comp)
			log.Info("compartment attached", "compartment", a.Name, "pid", a.Pid)
			if b, err := json.Marshal(a); err == nil {
				acks.Write(append(b, '\n'))
			}
		}
	}
}

// maxControlLine bounds one control message from the supervisor.
const maxControlLine = 1 << 20

var errLineTooLong = errors.New("line too long")

// readLine reads one '\n'-terminated line of at most max bytes; a longer
// line is consumed whole and reported as errLineTooLong.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			line = append(line, chunk...)
			if len(line) > max {
				tooLong, line = true, nil
			}
		}
		switch {
		case err == nil && tooLong:
			return nil, errLineTooLong
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, err
		}
	}
}

// attach connects to a compartment's plugin server started by the
// supervisor (go-plugin reattach).
// The address and its listener are checked first (attach.go), and every
// connection the gate makes to it later is checked the same way.
// A refused address or listener is audited (gate.plugin_refused).
func (ag *Agent) attach(ctx context.Context, a Attachment, c CompartmentConfig) (*plugin.Client, protocol.Compartment, error) {
	err := checkPluginAddr(c.PluginDir, a.Addr)
	if err == nil {
		var probe net.Conn
		if probe, err = dialPlugin(ctx, a.Addr, c.UID); err == nil {
			probe.Close()
		}
	}
	if err != nil {
		if errors.Is(err, ErrPluginAddr) || errors.Is(err, ErrPluginPeer) {
			ag.Record(Event{Compartment: a.Name, Kind: "gate/attach", Decision: "deny",
				Reason: "gate.plugin_refused", Detail: err.Error(), Origin: "gate"})
		}
		return nil, nil, fmt.Errorf("reattach %s: %w", a.Name, err)
	}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  protocol.Handshake,
		Plugins:          protocol.PluginMap,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions: append(protocol.DialOptions(), grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(protocol.MaxMessage), grpc.MaxCallSendMsgSize(protocol.MaxMessage)),
			// After go-plugin's own dialer, so it replaces it.
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				return dialPlugin(ctx, a.Addr, c.UID)
			})),
		Reattach: &plugin.ReattachConfig{
			Protocol: plugin.ProtocolGRPC, ProtocolVersion: int(protocol.Handshake.ProtocolVersion),
			Addr: &net.UnixAddr{Net: "unix", Name: a.Addr}, Pid: a.Pid,
		},
		Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Warn, Name: "plugin." + a.Name}),
	})
	rpc, err := pc.Client()
	if err != nil {
		return nil, nil, fmt.Errorf("reattach %s at %s: %w", a.Name, a.Addr, err)
	}
	raw, err := rpc.Dispense(protocol.PluginName)
	if err != nil {
		dropClient(pc)
		return nil, nil, fmt.Errorf("dispense %s: %w", a.Name, err)
	}
	return pc, raw.(protocol.Compartment), nil
}

// dropClient closes the gate's connection to a compartment without asking
// the compartment to shut down (plugin.Client.Kill would): its lifecycle is
// the supervisor's.
func dropClient(pc *plugin.Client) {
	rpc, err := pc.Client()
	if err != nil {
		return
	}
	if g, ok := rpc.(*plugin.GRPCClient); ok {
		g.Conn.Close()
	}
}

// listenGate opens the gate listener of one compartment: a unix socket only
// that compartment's uid can reach, whose peers are checked by SO_PEERCRED.
// An inherited listener (GateFD) is used as it is.
func listenGate(c CompartmentConfig) (net.Listener, error) {
	if c.GateFD > 0 {
		f := os.NewFile(uintptr(c.GateFD), c.GateSocket)
		l, err := net.FileListener(f)
		f.Close() // FileListener holds its own duplicate
		if err != nil {
			return nil, fmt.Errorf("gate socket for %s: inherited fd %d: %w", c.Name, c.GateFD, err)
		}
		return &peerListener{Listener: l, uid: c.UID}, nil
	}
	if err := os.Remove(c.GateSocket); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("gate socket %s: %w", c.GateSocket, err)
	}
	l, err := net.Listen("unix", c.GateSocket)
	if err != nil {
		return nil, fmt.Errorf("gate socket for %s: %w", c.Name, err)
	}
	if err := os.Chmod(c.GateSocket, 0o600); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(c.GateSocket, c.UID, c.GID); err != nil {
			return nil, err
		}
	}
	return &peerListener{Listener: l, uid: c.UID}, nil
}

// peerListener accepts only peers running as the compartment's uid.
type peerListener struct {
	net.Listener
	uid int
}

func (p *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := p.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			continue
		}
		cred, err := peerCred(uc)
		if err != nil || int(cred.Uid) != p.uid {
			c.Close()
			continue
		}
		return c, nil
	}
}

func peerCred(c *net.UnixConn) (*syscall.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil {
		return nil, err
	}
	return cred, cerr
}

// GateServer is the gRPC server of caller's gate listener: every call it
// receives is forwarded as coming from caller; messages larger than maxMsg
// are refused and audited.
func (a *Agent) GateServer(caller string, maxMsg int) *grpc.Server {
	s := grpc.NewServer(gateServerOptions(a, caller, maxMsg)...)
	callpb.RegisterGateServer(s, &gateServer{agent: a, caller: caller})
	return s
}

type gateServer struct {
	callpb.UnimplementedGateServer
	agent  *Agent
	caller string
}

func (g *gateServer) Forward(ctx context.Context, c *callpb.Call) (*callpb.Response, error) {
	return g.agent.Forward(ctx, g.caller, c), nil
}
