package gateagent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

func TestMaxMessageFor(t *testing.T) {
	a, _, _ := newTestAgent(t)
	reg := a.set.Load().Registry
	tests := []struct {
		caller string
		want   int
	}{
		{"outside", 1<<20 + envelope},    // the largest max_body outside may send
		{"purchasing", 4<<20 + envelope}, // keyhandler's 4 MiB
		{"inside", 4096 + envelope},
		{"keyhandler", envelope}, // calls nothing
	}
	for _, tt := range tests {
		t.Run(tt.caller, func(t *testing.T) {
			if got := maxMessageFor(reg, tt.caller); got != tt.want || got > protocol.MaxMessage {
				t.Fatalf("%d, want %d", got, tt.want)
			}
		})
	}
}

// A call over the caller's size limit is refused by the transport, and
// audited: the agent never saw it, so the transport reports it.
func TestTransportRefusesOversizedAndAudits(t *testing.T) {
	a, audit, _ := newTestAgent(t)
	const limit = 64 << 10
	sock := filepath.Join(t.TempDir(), "gate.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(gateServerOptions(a, "outside", limit)...)
	callpb.RegisterGateServer(s, &gateServer{agent: a, caller: "outside"})
	go s.Serve(limitConns(l, a.log, "outside", maxConns, nil))
	defer s.Stop()
	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(protocol.MaxMessage)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gate := callpb.NewGateClient(conn)

	tests := []struct {
		name   string
		body   int
		code   codes.Code
		reason string
	}{
		{"within the limit", 1 << 10, codes.OK, "pol.allowed"},
		{"over the limit", 2 * limit, codes.ResourceExhausted, "gate.message_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(audit.all())
			_, err := gate.Forward(context.Background(), &callpb.Call{Script: "purchasing/catalogue", Method: "GET", Query: string(make([]byte, tt.body))})
			if status.Code(err) != tt.code {
				t.Fatalf("err %v, want %v", err, tt.code)
			}
			// The transport records after it answered: wait for the record.
			for len(audit.all()) == before {
				runtime.Gosched()
			}
			if r := audit.last(); r.Reason != tt.reason {
				t.Fatalf("record %+v, want %s", r, tt.reason)
			}
		})
	}
}

// One connection too many is closed at once, and audited in aggregate
// (the e2e red-team suite's connection flood).
func TestConnLimit(t *testing.T) {
	a, audit, _ := newTestAgent(t)
	sock := filepath.Join(t.TempDir(), "gate.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ll := limitConns(l, slog.New(slog.DiscardHandler), "outside", 1, func() { a.limits.Load().refuseConn("outside") })
	defer ll.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ll.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	first, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	held := <-accepted
	second, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := second.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("second connection: %v, want EOF (closed)", err)
	}
	if r := audit.last(); r.Caller != "outside" || r.Script != limitScript || r.Reason != "gate.too_many_connections" || r.Count != 1 || r.Decision != "deny" {
		t.Fatalf("record of the refused connection %+v", r)
	}
	// More within the report interval are counted, and written as one.
	before := len(audit.all())
	for range 3 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("connection over the limit: %v, want EOF", err)
		}
		c.Close()
	}
	a.FlushLimits()
	if recs := audit.all(); len(recs) != before+1 || recs[len(recs)-1].Count != 3 || recs[len(recs)-1].Reason != "gate.too_many_connections" {
		t.Fatalf("3 refused connections recorded as %+v", recs[before:])
	}
	held.Close() // frees the slot
	third, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	(<-accepted).Close()
}
