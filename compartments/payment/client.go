package payment

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/e2sgate/e2sgate/compartments/payment/iso"
	"github.com/e2sgate/e2sgate/filters/socks"
)

// Errors of the way to the acquirer.
var (
	ErrUnreachable = errors.New("acquirer unreachable")
	ErrTimeout     = errors.New("acquirer did not answer in time")
	ErrNoAcquirer  = errors.New("no acquirer configured")
)

// Acquirer sends one request and returns the answer.
type Acquirer interface {
	Exchange(ctx context.Context, req iso.Request) (iso.Response, error)
}

// tlsAcquirer reaches the acquirer through the inside compartment's SOCKS
// filter (a unix socket) and speaks TLS end to end with it, accepting only
// the pinned certificate.
type tlsAcquirer struct {
	socks   string
	addr    netip.AddrPort
	pinned  []byte // DER
	timeout time.Duration
	dial    func(ctx context.Context) (net.Conn, error) // default: through socks
}

func newTLSAcquirer(c Config) (*tlsAcquirer, error) {
	if c.Acquirer == "" {
		return nil, ErrNoAcquirer
	}
	ap, err := netip.ParseAddrPort(c.Acquirer)
	if err != nil {
		return nil, fmt.Errorf("acquirer %q: %w", c.Acquirer, err)
	}
	blk, _ := pem.Decode([]byte(c.AcquirerCert))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("acquirer_cert: no PEM certificate to pin")
	}
	if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
		return nil, fmt.Errorf("acquirer_cert: %w", err)
	}
	a := &tlsAcquirer{socks: c.Socks, addr: ap, pinned: blk.Bytes, timeout: c.Timeout()}
	a.dial = func(ctx context.Context) (net.Conn, error) { return socks.Dial(ctx, a.socks, a.addr) }
	return a, nil
}

// Exchange opens a connection per request: simple, and a request that timed
// out leaves nothing behind on which a late answer could be mistaken.
func (a *tlsAcquirer) Exchange(ctx context.Context, req iso.Request) (iso.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	raw, err := a.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return iso.Response{}, fmt.Errorf("%w: %v", ErrTimeout, err)
		}
		return iso.Response{}, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	defer raw.Close()
	dl, _ := ctx.Deadline()
	raw.SetDeadline(dl)
	c := tls.Client(raw, &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the pin below: exactly one certificate is accepted
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, a.pinned) {
				return errors.New("acquirer certificate is not the pinned one")
			}
			return nil
		},
	})
	if err := c.HandshakeContext(ctx); err != nil {
		if isTimeout(err) || ctx.Err() != nil {
			return iso.Response{}, fmt.Errorf("%w: TLS: %v", ErrTimeout, err)
		}
		return iso.Response{}, fmt.Errorf("%w: TLS: %v", ErrUnreachable, err)
	}
	msg, err := req.Pack()
	if err != nil {
		return iso.Response{}, err
	}
	if err := iso.WriteFrame(c, msg); err != nil {
		return iso.Response{}, fmt.Errorf("%w: send: %v", ErrUnreachable, err)
	}
	b, err := iso.ReadFrame(bufio.NewReader(c))
	if err != nil {
		if isTimeout(err) {
			return iso.Response{}, fmt.Errorf("%w after %s", ErrTimeout, a.timeout)
		}
		return iso.Response{}, fmt.Errorf("%w: read: %v", ErrUnreachable, err)
	}
	resp, err := iso.UnpackResponse(b)
	if err != nil {
		return resp, err
	}
	if resp.MTI != iso.ResponseMTI(req.MTI) || resp.RRN != req.RRN || resp.STAN != req.STAN {
		return resp, fmt.Errorf("%w: answer %s for %s/%s does not match the request", iso.ErrFormat, resp.MTI, resp.RRN, resp.STAN)
	}
	return resp, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
