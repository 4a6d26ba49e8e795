package protocol

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
)

// Environment the supervisor gives every compartment program.
const (
	EnvName       = "E2SGATE_NAME"        // the compartment's name
	EnvGateSocket = "E2SGATE_GATE_SOCKET" // the gate agent's listener for this compartment
	EnvDataDir    = "E2SGATE_DATA_DIR"    // the compartment's own writable tree
	EnvConfig     = "E2SGATE_CONFIG"      // the compartment's own config section, JSON
)

// MaxMessage bounds one call or answer on every gRPC hop: the largest body
// a registration may allow (16 MiB) plus room for meta-variables and
// encoding. gRPC's own default of 4 MiB would cut calls the registry allows.
const MaxMessage = 16<<20 + 4<<20

// Every gRPC hop is a unix socket on one machine, so flow control has
// nothing to measure: a fixed window of 1 MiB per stream (4 MiB per
// connection) turns off gRPC's bandwidth probe, whose pings cost a write
// and a wake-up per message, and lets a typical call go out in one write.
// Write buffers are shared between idle connections instead of held by
// each.
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// ServerOptions are the gRPC server settings of every hop (the gate
// agent's listeners, the compartments' plugins).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow), grpc.InitialConnWindowSize(connWindow),
		grpc.SharedWriteBuffer(true),
	}
}

// DialOptions are the gRPC client settings of every hop (a compartment to
// the gate agent, the gate agent to a plugin).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow),
		grpc.WithSharedWriteBuffer(true),
	}
}

// Env is what a compartment program learns from its environment.
type Env struct {
	Name       string
	GateSocket string
	DataDir    string
	Config     json.RawMessage
}

// LoadEnv reads the compartment environment and refuses to run without it.
func LoadEnv() (Env, error) {
	e := Env{
		Name:       os.Getenv(EnvName),
		GateSocket: os.Getenv(EnvGateSocket),
		DataDir:    os.Getenv(EnvDataDir),
		Config:     json.RawMessage(os.Getenv(EnvConfig)),
	}
	if e.Name == "" || e.GateSocket == "" {
		return e, fmt.Errorf("%w: %s and %s must be set; compartment programs are started by e2sgated", ErrNotACompartment, EnvName, EnvGateSocket)
	}
	if len(e.Config) == 0 {
		e.Config = json.RawMessage("{}")
	}
	return e, nil
}

// NewLogger is the JSON logger every program uses, tagged with its name.
func NewLogger(name string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("compartment", name)
}

// Serve serves impl as the compartment plugin until the gate agent or a
// signal ends it. It is the last call of a compartment program's run.
func Serve(impl Compartment) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         map[string]plugin.Plugin{PluginName: &CompartmentPlugin{Impl: impl}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(append(opts, grpc.MaxRecvMsgSize(MaxMessage), grpc.MaxSendMsgSize(MaxMessage)), ServerOptions()...)...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{
			Output: os.Stderr, JSONFormat: true, Level: hclog.Warn,
		}),
	})
}

// Gate is a compartment's one way to other compartments.
type Gate struct {
	conn *grpc.ClientConn
	c    callpb.GateClient
}

// DialGate connects to the gate agent's listener for this compartment.
func DialGate(socket string) (*Gate, error) {
	conn, err := grpc.NewClient("unix:"+socket, append(DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}))...)
	if err != nil {
		return nil, fmt.Errorf("dial gate %s: %w", socket, err)
	}
	return &Gate{conn: conn, c: callpb.NewGateClient(conn)}, nil
}

// Call asks the gate agent to forward call; the answer is the target's, or
// the gate agent's denial.
func (g *Gate) Call(ctx context.Context, call *callpb.Call) (*callpb.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	r, err := g.c.Forward(ctx, call)
	if err != nil {
		return nil, fmt.Errorf("gate call %s: %w", call.GetScript(), err)
	}
	return r, nil
}

// Close closes the connection to the gate agent.
func (g *Gate) Close() error { return g.conn.Close() }

// Main is the whole life of a compartment program: read its environment,
// apply the Landlock rules the supervisor passed (if any; failing closed),
// connect to the gate agent, build the handler and serve it.
func Main(build func(env Env, log *slog.Logger, gate *Gate) (Compartment, error)) error {
	env, err := LoadEnv()
	if err != nil {
		return err
	}
	log := NewLogger(env.Name)
	if _, ok := os.LookupEnv(landlock.EnvName); ok {
		if err := landlock.RestrictSelf(); err != nil {
			return fmt.Errorf("%s: landlock: %w", env.Name, err)
		}
	}
	gate, err := DialGate(env.GateSocket)
	if err != nil {
		return err
	}
	defer gate.Close()
	impl, err := build(env, log, gate)
	if err != nil {
		return fmt.Errorf("%s: %w", env.Name, err)
	}
	Serve(impl)
	return nil
}
