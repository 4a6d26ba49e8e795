package socks

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu sync.Mutex
	ev []Event
	ch chan Event
}

func (r *recorder) add(e Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
	r.ch <- e
}

func echoServer(t *testing.T) netip.AddrPort {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

func startFilter(t *testing.T, allow ...netip.AddrPort) (string, *recorder) {
	path := filepath.Join(t.TempDir(), "socks.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	rec := &recorder{ch: make(chan Event, 16)}
	f := &Filter{Caller: "payment", Allow: allow, Audit: rec.add}
	go f.Serve(l)
	return path, rec
}

func TestAllowedRelayedAndAudited(t *testing.T) {
	echo := echoServer(t)
	path, rec := startFilter(t, echo)
	c, err := Dial(context.Background(), path, echo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo through the filter = %q, %v", b, err)
	}
	e := <-rec.ch
	if e.Decision != "allow" || e.Reason != ReasonAllowed || e.Caller != "payment" || e.Dest != echo.String() {
		t.Fatalf("audit %+v", e)
	}
}

func TestRefusedAndAudited(t *testing.T) {
	echo := echoServer(t)
	other := echoServer(t)
	path, rec := startFilter(t, echo)
	tests := []struct {
		name   string
		do     func(c net.Conn) (byte, error)
		rep    byte
		reason string
	}{
		{"address not allowlisted", func(c net.Conn) (byte, error) {
			return RawConnect(c, other.Addr().String(), other.Port())
		}, repNotAllowed, ReasonNotAllowed},
		{"allowed address, other port", func(c net.Conn) (byte, error) {
			return RawConnect(c, echo.Addr().String(), echo.Port()+1)
		}, repNotAllowed, ReasonNotAllowed},
		{"a name, even one that resolves", func(c net.Conn) (byte, error) {
			return RawConnect(c, "localhost", echo.Port())
		}, repNotAllowed, ReasonNotAllowed},
		{"BIND", func(c net.Conn) (byte, error) {
			c.Write([]byte{5, 1, 0})
			io.ReadFull(c, make([]byte, 2))
			a := echo.Addr().As4()
			c.Write(append(append([]byte{5, 2, 0, 1}, a[:]...), byte(echo.Port()>>8), byte(echo.Port())))
			rep := make([]byte, 10)
			_, err := io.ReadFull(c, rep)
			return rep[1], err
		}, repCmdUnsupported, ReasonUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rep, err := tt.do(c)
			if err != nil || rep != tt.rep {
				t.Fatalf("reply %d, %v; want %d", rep, err, tt.rep)
			}
			e := <-rec.ch
			if e.Decision != "deny" || e.Reason != tt.reason {
				t.Fatalf("audit %+v, want deny %s", e, tt.reason)
			}
		})
	}
	if _, err := Dial(context.Background(), path, other); !errors.Is(err, ErrRefused) {
		t.Fatalf("Dial to a refused endpoint: %v", err)
	}
	<-rec.ch
}

func TestNotSOCKS(t *testing.T) {
	path, rec := startFilter(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, _ := c.Read(make([]byte, 16)); n != 0 {
		t.Fatalf("answered %d bytes to HTTP", n)
	}
	c.Close()
	if e := <-rec.ch; e.Decision != "deny" || e.Reason != ReasonProtocol {
		t.Fatalf("audit %+v", e)
	}
}
