// Package payment is the payment compartment (E2S §6.2.2). In this slice it
// answers a health call through the gate agent; authorisation and capture
// through the inside compartment's SOCKS filter come with the purchasing
// flow.
package payment

import (
	"context"
	"log/slog"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// Handler serves the payment scripts.
type Handler struct{ log *slog.Logger }

// New returns the payment handler.
func New(log *slog.Logger) *Handler { return &Handler{log: log} }

// Handle dispatches on the registered handler name.
func (h *Handler) Handle(_ context.Context, c *callpb.Call) (*callpb.Response, error) {
	if c.GetScript() == "health" {
		return protocol.JSON(200, map[string]string{"compartment": "payment", "status": "ok"}), nil
	}
	return protocol.Error(404, "no_handler", "no such handler"), nil
}
