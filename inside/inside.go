// Package inside is the one compartment attached to the internal network:
// the back-office connector and, later, the SOCKS and DNS filters through
// which other compartments reach internal IT. In this slice it answers a
// health call through the gate agent.
package inside

import (
	"context"
	"log/slog"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// Handler serves the inside compartment's scripts.
type Handler struct{ log *slog.Logger }

// New returns the inside handler.
func New(log *slog.Logger) *Handler { return &Handler{log: log} }

// Handle dispatches on the registered handler name.
func (h *Handler) Handle(_ context.Context, c *callpb.Call) (*callpb.Response, error) {
	if c.GetScript() == "health" {
		return protocol.JSON(200, map[string]string{"compartment": "inside", "status": "ok"}), nil
	}
	return protocol.Error(404, "no_handler", "no such handler"), nil
}
