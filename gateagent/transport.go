package gateagent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/e2sgate/e2sgate/compartments/protocol"
)

// The transport's share of bounding a caller: each compartment's gate
// listener accepts at most maxConns connections, each carries at most
// maxStreams calls at once (a client waits for the rest), and a call may be
// no larger than the largest body the registry lets that caller send plus
// an envelope for the other fields. A message refused for its size is
// audited.
const (
	maxConns   = 64
	maxStreams = 64
)

// maxMessageFor is the largest call caller may send under reg.
func maxMessageFor(reg *Registry, caller string) int {
	var body int64
	for _, r := range reg.Scripts {
		if slices.Contains(r.Callers, caller) {
			body = max(body, r.MaxBody)
		}
	}
	return min(int(body)+envelope, protocol.MaxMessage)
}

// gateServerOptions are the gRPC options of caller's gate listener.
func gateServerOptions(a *Agent, caller string, maxMsg int) []grpc.ServerOption {
	return append(protocol.ServerOptions(),
		grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(protocol.MaxMessage),
		grpc.MaxConcurrentStreams(maxStreams),
		grpc.StatsHandler(&transportAudit{agent: a, caller: caller, limit: maxMsg}),
		// Stream workers reuse goroutines whose stacks have already grown to
		// what an OPA evaluation needs, instead of growing a new one per call.
		grpc.NumStreamWorkers(4),
	)
}

// transportAudit records the calls the transport refused before the agent
// saw them: messages over the caller's size limit.
type transportAudit struct {
	agent  *Agent
	caller string
	limit  int
}

func (t *transportAudit) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (t *transportAudit) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (t *transportAudit) HandleConn(context.Context, stats.ConnStats) {}

func (t *transportAudit) HandleRPC(_ context.Context, s stats.RPCStats) {
	end, ok := s.(*stats.End)
	if !ok || end.Error == nil || status.Code(end.Error) != codes.ResourceExhausted {
		return
	}
	t.agent.Record(Event{Compartment: t.caller, Kind: "gate/transport", Decision: "deny",
		Reason: "gate.message_too_large", Origin: "gate", Detail: fmt.Sprintf("a call over the caller's limit of %d bytes was refused by the transport", t.limit)})
}

// connLimit accepts at most n connections at once; one more is closed at
// once, logged and reported to refused (which records it in the audit log,
// in aggregate), so a flood of connections from one compartment costs the
// others nothing.
type connLimit struct {
	net.Listener
	log     *slog.Logger
	caller  string
	sem     chan struct{}
	refused func()
}

func limitConns(l net.Listener, log *slog.Logger, caller string, n int, refused func()) net.Listener {
	return &connLimit{Listener: l, log: log, caller: caller, sem: make(chan struct{}, n), refused: refused}
}

func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.sem <- struct{}{}:
			return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
		default:
			// Recorded before it is closed: the caller sees the close
			// only once the refusal is counted.
			if l.refused != nil {
				l.refused()
			}
			c.Close()
			l.log.Warn("gate connection refused: too many open", "compartment", l.caller, "limit", cap(l.sem))
		}
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
