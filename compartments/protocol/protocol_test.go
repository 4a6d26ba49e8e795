package protocol

import (
	"context"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

type upper struct{}

func (upper) Handle(_ context.Context, c *callpb.Call) (*callpb.Response, error) {
	return &callpb.Response{Status: 201, Body: []byte(c.GetScript() + ":" + c.GetMeta()["K"]), Headers: map[string]string{"A": "b"}}, nil
}

// Both sides of the plugin boundary in one process: the call and the
// answer cross gRPC intact.
func TestPluginRoundTrip(t *testing.T) {
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: &CompartmentPlugin{Impl: upper{}}})
	defer client.Close()
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	r, err := raw.(Compartment).Handle(context.Background(), &callpb.Call{Script: "s", Meta: map[string]string{"K": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != 201 || string(r.Body) != "s:v" || r.Headers["A"] != "b" {
		t.Fatalf("got %+v", r)
	}
}

func TestLoadEnvRefusesWithoutSupervisor(t *testing.T) {
	t.Setenv(EnvName, "")
	t.Setenv(EnvGateSocket, "")
	if _, err := LoadEnv(); err == nil {
		t.Fatal("ran without the supervisor's environment")
	}
}
