// Package socks is the inside compartment's policy-controlled SOCKS5 filter
// (RFC 1928; E2S §6.3.1.2 "Trusted SOCKS"): a function compartment that must
// reach an external system (payment → the acquirer) connects to a unix
// socket of its own, and the filter relays bytes only to the endpoints
// allowed for that caller. The caller is the listener a connection arrived
// on, never anything the client says. CONNECT to an allowed IP address and
// port is the only request served; everything else is refused with a SOCKS
// error reply. Every connection, allowed or refused, is reported to Audit.
// TLS stays end to end: the filter sees only ciphertext.
package socks

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// SOCKS5 constants (RFC 1928).
const (
	version5    = 5
	methodNone  = 0
	methodNoAcc = 0xff
	cmdConnect  = 1
	atypIPv4    = 1
	atypDomain  = 3
	atypIPv6    = 4

	repSucceeded      = 0
	repGeneralFailure = 1
	repNotAllowed     = 2
	repHostUnreach    = 4
	repCmdUnsupported = 7
	repAtypUnsupport  = 8
)

// Reason ids (policies/reasons.yaml).
const (
	ReasonAllowed     = "socks.allowed"
	ReasonNotAllowed  = "socks.not_allowlisted"
	ReasonUnsupported = "socks.unsupported_request"
	ReasonDialFailed  = "socks.dial_failed"
	ReasonProtocol    = "socks.protocol_error"
)

// ErrRefused: the filter refused the request (client side).
var ErrRefused = errors.New("socks request refused")

// Event is one audited connection.
type Event struct {
	Caller   string
	Dest     string // as requested
	Decision string // "allow" or "deny"
	Reason   string
}

func (e Event) String() string { return fmt.Sprintf("caller=%s dest=%s", e.Caller, e.Dest) }

// Filter serves one caller's listener.
type Filter struct {
	Caller string
	Allow  []netip.AddrPort
	// Dial opens the onward connection; default net.Dialer with a 10 s
	// timeout.
	Dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	Audit func(Event)
	Log   *slog.Logger
	// MaxConns bounds the connections served at once (default 64); beyond
	// it the filter stops accepting until one ends.
	MaxConns int
}

// Serve accepts connections on l until it is closed.
func (f *Filter) Serve(l net.Listener) error {
	if f.Log == nil {
		f.Log = slog.New(slog.DiscardHandler)
	}
	if f.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		f.Dial = d.DialContext
	}
	if f.MaxConns <= 0 {
		f.MaxConns = 64
	}
	sem := make(chan struct{}, f.MaxConns)
	for {
		sem <- struct{}{}
		c, err := l.Accept()
		if err != nil {
			<-sem
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go func() { defer func() { <-sem }(); f.serve(c) }()
	}
}

func (f *Filter) audit(dest, decision, reason string) {
	e := Event{Caller: f.Caller, Dest: dest, Decision: decision, Reason: reason}
	f.Log.Info("socks connection", "caller", f.Caller, "dest", dest, "decision", decision, "reason", reason)
	if f.Audit != nil {
		f.Audit(e)
	}
}

func (f *Filter) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // for the handshake only
	dest, cmd, err := handshake(c)
	if err != nil {
		f.audit(dest, "deny", ReasonProtocol)
		return
	}
	if cmd != cmdConnect {
		reply(c, repCmdUnsupported, nil)
		f.audit(dest, "deny", ReasonUnsupported)
		return
	}
	ap, err := netip.ParseAddrPort(dest)
	if err != nil { // a domain name: the allowlist is by address
		reply(c, repNotAllowed, nil)
		f.audit(dest, "deny", ReasonNotAllowed)
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !slices.Contains(f.Allow, ap) {
		reply(c, repNotAllowed, nil)
		f.audit(dest, "deny", ReasonNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	up, err := f.Dial(ctx, "tcp", ap.String())
	cancel()
	if err != nil {
		f.Log.Warn("socks dial failed", "caller", f.Caller, "dest", dest, "error", err)
		reply(c, repHostUnreach, nil)
		f.audit(dest, "deny", ReasonDialFailed)
		return
	}
	defer up.Close()
	f.audit(dest, "allow", ReasonAllowed)
	if err := reply(c, repSucceeded, up.LocalAddr()); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	relay(c, up)
}

// handshake reads the greeting and the request; dest is "ip:port" or
// "name:port".
func handshake(c net.Conn) (dest string, cmd byte, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return "", 0, err
	}
	if hdr[0] != version5 || hdr[1] == 0 {
		return "", 0, fmt.Errorf("not SOCKS5")
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, methods); err != nil {
		return "", 0, err
	}
	if !slices.Contains(methods, methodNone) {
		c.Write([]byte{version5, methodNoAcc})
		return "", 0, fmt.Errorf("no acceptable method")
	}
	if _, err := c.Write([]byte{version5, methodNone}); err != nil {
		return "", 0, err
	}
	var req [4]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return "", 0, err
	}
	if req[0] != version5 {
		return "", 0, fmt.Errorf("bad request version")
	}
	var host string
	switch req[3] {
	case atypIPv4, atypIPv6:
		n := 4
		if req[3] == atypIPv6 {
			n = 16
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(c, b); err != nil {
			return "", 0, err
		}
		a, _ := netip.AddrFromSlice(b)
		host = a.String()
	case atypDomain:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return "", 0, err
		}
		b := make([]byte, l[0])
		if _, err := io.ReadFull(c, b); err != nil {
			return "", 0, err
		}
		host = string(b)
	default:
		reply(c, repAtypUnsupport, nil)
		return "", 0, fmt.Errorf("address type %d", req[3])
	}
	var port [2]byte
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return "", 0, err
	}
	return net.JoinHostPort(host, fmt.Sprint(binary.BigEndian.Uint16(port[:]))), req[1], nil
}

func reply(c net.Conn, rep byte, bound net.Addr) error {
	b := []byte{version5, rep, 0, atypIPv4, 0, 0, 0, 0, 0, 0}
	if ta, ok := bound.(*net.TCPAddr); ok {
		if ap := ta.AddrPort(); ap.Addr().Unmap().Is4() {
			a := ap.Addr().Unmap().As4()
			copy(b[4:8], a[:])
			binary.BigEndian.PutUint16(b[8:], ap.Port())
		}
	}
	_, err := c.Write(b)
	return err
}

// relay copies both ways until both directions are done.
func relay(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// Dial connects through the SOCKS filter listening on the unix socket
// path to target (an IP address and port).
func Dial(ctx context.Context, path string, target netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("socks %s: %w", path, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := connect(c, target); err != nil {
		c.Close()
		return nil, fmt.Errorf("socks connect %s: %w", target, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func connect(c net.Conn, target netip.AddrPort) error {
	if _, err := c.Write([]byte{version5, 1, methodNone}); err != nil {
		return err
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		return err
	}
	if m[0] != version5 || m[1] != methodNone {
		return fmt.Errorf("%w: method refused", ErrRefused)
	}
	req := []byte{version5, cmdConnect, 0}
	if a := target.Addr().Unmap(); a.Is4() {
		b := a.As4()
		req = append(append(req, atypIPv4), b[:]...)
	} else {
		b := a.As16()
		req = append(append(req, atypIPv6), b[:]...)
	}
	req = binary.BigEndian.AppendUint16(req, target.Port())
	if _, err := c.Write(req); err != nil {
		return err
	}
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return err
	}
	if rep[1] != repSucceeded {
		return fmt.Errorf("%w: reply %d", ErrRefused, rep[1])
	}
	return nil
}

// RawConnect sends a CONNECT for an arbitrary host:port (a name too) and
// returns the reply code; for tests of what the filter refuses.
func RawConnect(c net.Conn, host string, port uint16) (byte, error) {
	if _, err := c.Write([]byte{version5, 1, methodNone}); err != nil {
		return 0, err
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil {
		return 0, err
	}
	req := []byte{version5, cmdConnect, 0, atypDomain, byte(len(host))}
	req = binary.BigEndian.AppendUint16(append(req, host...), port)
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return 0, err
	}
	return rep[1], nil
}
