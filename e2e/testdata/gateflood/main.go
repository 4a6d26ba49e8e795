// Command gateflood is a test rig of the e2e flood test: run with the
// outside compartment's uid, it holds outside's position at the gate (its
// gate socket) and abuses it as a compromised web front would, until its
// stdin closes; then it prints what it saw as JSON.
//
//	gateflood -socket S -conns 3000 -workers 48 -oversize 3
//
// In order: -oversize calls larger than outside may send (the transport
// refuses them); -conns raw connections opened and held (sending nothing);
// then -workers loops of denied calls (keyhandler/sign-offer, which outside may
// not call, and an unregistered script) over a few gRPC connections made
// before the held ones, until stdin closes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// Report is the rig's answer.
type Report struct {
	Calls       int64          `json:"calls"`
	Answers     map[string]int `json:"answers"` // "status reason" → calls
	Oversized   map[string]int `json:"oversized"`
	ConnsOpened int            `json:"conns_opened"`
	ConnsHeld   int            `json:"conns_held"`   // still open when the flood ended
	ConnsClosed int            `json:"conns_closed"` // closed by the gate
	DialFailed  int            `json:"dial_failed"`
	DialError   string         `json:"dial_error,omitempty"`
}

func main() {
	socket := flag.String("socket", "", "outside's gate socket")
	conns := flag.Int("conns", 3000, "raw connections to open and hold")
	workers := flag.Int("workers", 48, "goroutines sending denied calls")
	clients := flag.Int("clients", 4, "gRPC connections the workers share")
	oversize := flag.Int("oversize", 3, "calls larger than outside may send")
	flag.Parse()
	if err := run(*socket, *conns, *workers, *clients, *oversize); err != nil {
		fmt.Fprintln(os.Stderr, "gateflood:", err)
		os.Exit(1)
	}
}

func run(socket string, nconns, workers, clients, oversize int) error {
	rep := Report{Answers: map[string]int{}, Oversized: map[string]int{}}
	var mu sync.Mutex
	count := func(m map[string]int, k string) { mu.Lock(); m[k]++; mu.Unlock() }

	// The flood's own connections first, each with one call through it, so
	// the held connections below cannot crowd them out.
	gates := make([]*protocol.Gate, clients)
	for i := range gates {
		g, err := protocol.DialGate(socket)
		if err != nil {
			return err
		}
		defer g.Close()
		if _, err := g.Call(context.Background(), denied(0)); err != nil {
			return fmt.Errorf("first call: %w", err)
		}
		gates[i] = g
	}

	// Oversized calls: 2 MiB bodies where outside may send 1.25 MiB.
	for range oversize {
		big := &callpb.Call{Script: "purchasing/accept", Method: "POST", Body: make([]byte, 2<<20),
			Meta: map[string]string{"CONTENT_TYPE": "application/json"}}
		_, err := gates[0].Call(context.Background(), big)
		count(rep.Oversized, answer(nil, err))
	}

	// Held connections: opened, never written to.
	held := make([]net.Conn, 0, nconns)
	for range nconns {
		c, err := net.Dial("unix", socket)
		if err != nil {
			rep.DialFailed++
			rep.DialError = err.Error()
			continue
		}
		held = append(held, c)
	}
	rep.ConnsOpened = len(held)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()

	// The flood, until stdin closes.
	stop := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
	var calls atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := gates[w%len(gates)]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := g.Call(context.Background(), denied(i))
				calls.Add(1)
				count(rep.Answers, answer(r, err))
			}
		}()
	}
	wg.Wait()
	rep.Calls = calls.Load()

	// Which held connections the gate closed: a read that ends (EOF) says
	// so; one still open times out or reads the server's greeting.
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		var b [64]byte
		if _, err := c.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			rep.ConnsClosed++
		} else {
			rep.ConnsHeld++
		}
	}
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// denied is the i-th call of the flood: every one is refused by the gate.
func denied(i int) *callpb.Call {
	if i%2 == 0 {
		return &callpb.Call{Script: "keyhandler/sign-offer", Method: "POST", Body: []byte(`{}`),
			Meta: map[string]string{"CONTENT_TYPE": "application/json"}}
	}
	return &callpb.Call{Script: "purchasing/flood", Method: "GET"}
}

// answer names an outcome: "status reason", or the transport's code.
func answer(r *callpb.Response, err error) string {
	if err != nil {
		if s, ok := status.FromError(errors.Unwrap(err)); ok {
			return "transport " + s.Code().String()
		}
		return "error"
	}
	return fmt.Sprintf("%d %s", r.GetStatus(), r.GetHeaders()["X-E2S-Reason"])
}
