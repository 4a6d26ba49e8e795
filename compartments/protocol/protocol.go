// Package protocol is the process boundary between the gate agent and the
// compartments: one Go interface (Compartment), the go-plugin Handshake and
// PluginMap, and the client a compartment uses to call back through the gate
// agent. Host code sees only the interface.
package protocol

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// Handshake is shared by the gate agent and every compartment program. It is
// not a security measure: it keeps a compartment binary from being run by
// hand by mistake.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "E2SGATE_COMPARTMENT",
	MagicCookieValue: "d6a3f1c2-compartment",
}

// PluginName is the one plugin every compartment program serves.
const PluginName = "compartment"

// PluginMap is the map of plugins the gate agent can dispense.
var PluginMap = map[string]plugin.Plugin{
	PluginName: &CompartmentPlugin{},
}

// Compartment is what every compartment program implements and what the
// gate agent calls.
type Compartment interface {
	Handle(ctx context.Context, call *callpb.Call) (*callpb.Response, error)
}

// CompartmentPlugin is the go-plugin glue for Compartment over gRPC.
type CompartmentPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Compartment
}

func (p *CompartmentPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	callpb.RegisterCompartmentServer(s, &compartmentServer{impl: p.Impl})
	return nil
}

func (p *CompartmentPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &compartmentClient{c: callpb.NewCompartmentClient(c)}, nil
}

type compartmentServer struct {
	callpb.UnimplementedCompartmentServer
	impl Compartment
}

func (s *compartmentServer) Handle(ctx context.Context, c *callpb.Call) (*callpb.Response, error) {
	return s.impl.Handle(ctx, c)
}

type compartmentClient struct{ c callpb.CompartmentClient }

func (c *compartmentClient) Handle(ctx context.Context, call *callpb.Call) (*callpb.Response, error) {
	return c.c.Handle(ctx, call)
}
