package socks

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// FuzzServe feeds any bytes to the filter as a client would send them: the
// filter answers and closes, audits exactly one decision, and allows only
// a destination on its allowlist.
func FuzzServe(f *testing.F) {
	allowed := netip.MustParseAddrPort("10.77.0.10:8583")
	f.Add([]byte{5, 1, 0, 5, 1, 0, 1, 10, 77, 0, 10, 0x21, 0x87})                                           // allowed CONNECT
	f.Add([]byte{5, 1, 0, 5, 1, 0, 1, 10, 77, 0, 11, 0x21, 0x87})                                           // not allowed
	f.Add([]byte{5, 1, 0, 5, 1, 0, 3, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0, 80})               // a name
	f.Add([]byte{5, 1, 0, 5, 2, 0, 1, 10, 77, 0, 10, 0x21, 0x87})                                           // BIND
	f.Add([]byte{5, 1, 0, 5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 77, 0, 10, 0x21, 0x87}) // v4-mapped v6
	f.Add([]byte{4, 1, 0, 80, 127, 0, 0, 1, 0})                                                             // SOCKS4
	f.Fuzz(func(t *testing.T, in []byte) {
		var events []Event
		flt := &Filter{Caller: "payment", Allow: []netip.AddrPort{allowed},
			Dial: func(context.Context, string, string) (net.Conn, error) {
				up, peer := net.Pipe()
				peer.Close()
				return up, nil
			},
			Audit: func(e Event) { events = append(events, e) }}
		flt.Log = slog.New(slog.DiscardHandler)
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() { defer close(done); flt.serve(server) }()
		go io.Copy(io.Discard, client)
		client.SetDeadline(time.Now().Add(5 * time.Second))
		// The client writes and closes on its own, so a filter that stops
		// reading early ends the case at once instead of leaving the write
		// blocked until the deadline (which, on a loaded machine, the fuzz
		// coordinator took for a hang).
		go func() {
			client.Write(in)
			client.Close()
		}()
		<-done
		client.Close()
		if len(events) != 1 {
			t.Fatalf("%d audit events for one connection: %v", len(events), events)
		}
		e := events[0]
		if e.Decision == "allow" {
			ap, err := netip.ParseAddrPort(e.Dest)
			if err != nil || !slices.Contains(flt.Allow, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())) {
				t.Fatalf("allowed %q, not on the allowlist", e.Dest)
			}
		}
		if e.Reason == "" {
			t.Fatalf("decision without a reason: %+v", e)
		}
	})
}
