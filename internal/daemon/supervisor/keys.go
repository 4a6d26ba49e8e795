package supervisor

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/e2sgate/e2sgate/internal/daemon/admin"
	"github.com/e2sgate/e2sgate/internal/durable"
)

// The keyadmin's commands on the merchant key (e2sctl key ...). The key
// is made and kept by the key handler and never leaves it: the supervisor
// reads only its certificates, and asks for a new key by a request file
// in the key handler's data directory and a restart of the key handler
// (compartments/keyhandler: KeyFile, CertFile, PreviousDir, RotateRequest;
// the supervisor links none of its code).
const (
	khName          = "keyhandler"
	khKeyFile       = "merchant.key"
	khCertFile      = "merchant.pem"
	khPreviousDir   = "previous"
	khRotateRequest = "rotate.request"
	rotateWait      = time.Minute
)

// CertInfo describes one merchant certificate.
type CertInfo struct {
	Subject   string    `json:"subject"`
	Serial    string    `json:"serial"`
	SHA256    string    `json:"sha256"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Key       string    `json:"key"`
}

// KeyInfo is what e2sctl key show prints.
type KeyInfo struct {
	Certificate CertInfo   `json:"certificate"`
	KeyFile     string     `json:"key_file"`
	KeyLives    string     `json:"key_lives"`
	Published   string     `json:"published"`
	Previous    []CertInfo `json:"previous,omitempty"`
}

func certInfo(c *x509.Certificate) CertInfo {
	sum := sha256.Sum256(c.Raw)
	key := fmt.Sprintf("%T", c.PublicKey)
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
		key = "ECDSA " + k.Curve.Params().Name
	}
	return CertInfo{Subject: c.Subject.String(), Serial: c.SerialNumber.Text(16), SHA256: strings.ToUpper(hex.EncodeToString(sum[:])),
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Key: key}
}

func readCert(path string) (*x509.Certificate, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("%s is not a PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	return c, pem.EncodeToMemory(blk), err
}

func (s *Supervisor) merchantCert() (*x509.Certificate, []byte, error) {
	c, p, err := readCert(filepath.Join(s.dataDir(khName), khCertFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("no merchant certificate yet: the key handler makes its key on its first start; check e2sctl status")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("merchant certificate: %w", err)
	}
	return c, p, nil
}

func (s *Supervisor) previousCerts() ([]*x509.Certificate, error) {
	names, _ := filepath.Glob(filepath.Join(s.dataDir(khName), khPreviousDir, "*.pem"))
	var out []*x509.Certificate
	for _, n := range names {
		c, _, err := readCert(n)
		if err != nil {
			return nil, fmt.Errorf("previous merchant certificate: %w", err)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NotBefore.After(out[j].NotBefore) })
	return out, nil
}

func (s *Supervisor) publishedMerchant() string {
	return filepath.Join(s.cfg.RunDir, "public", "merchant.pem")
}

// publishMerchantCert copies the merchant's certificates, readable by
// everyone, beside the web front's: merchant.pem the current one, and
// merchant-<serial>.pem each one of a rotated key, which still verifies
// what that key signed.
func (s *Supervisor) publishMerchantCert() error {
	_, p, err := s.merchantCert()
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.publishedMerchant())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := durable.WriteFile(s.publishedMerchant(), p, 0o644); err != nil {
		return err
	}
	prev, err := s.previousCerts()
	if err != nil {
		return err
	}
	for _, c := range prev {
		b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		if err := durable.WriteFile(filepath.Join(dir, "merchant-"+c.SerialNumber.Text(16)+".pem"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (s *Supervisor) keyInfo() (*KeyInfo, error) {
	c, _, err := s.merchantCert()
	if err != nil {
		return nil, err
	}
	info := &KeyInfo{Certificate: certInfo(c), KeyFile: filepath.Join(s.dataDir(khName), khKeyFile),
		KeyLives:  "in the key handler compartment only (its uid's file, never read by the supervisor or sent anywhere)",
		Published: s.publishedMerchant()}
	prev, err := s.previousCerts()
	if err != nil {
		return nil, err
	}
	for _, p := range prev {
		info.Previous = append(info.Previous, certInfo(p))
	}
	return info, nil
}

func (s *Supervisor) registerKeys(srv *admin.Server) {
	srv.Register("key.show", admin.Command{Run: func(context.Context, admin.Caller, json.RawMessage) (any, error) {
		return s.keyInfo()
	}})
	srv.Register("key.export_cert", admin.Command{Run: func(context.Context, admin.Caller, json.RawMessage) (any, error) {
		_, p, err := s.merchantCert()
		if err != nil {
			return nil, err
		}
		return string(p), nil
	}})
	// The state a rotation is proposed against: the certificate in force.
	// Approved after another rotation, it is void (adm.stale).
	state := func(context.Context) (string, error) {
		c, _, err := s.merchantCert()
		if err != nil {
			return "", err
		}
		return "merchant certificate " + certInfo(c).SHA256, nil
	}
	srv.Register("key.rotate", admin.Command{Group: "key", State: state,
		Check: func(context.Context, admin.Caller, json.RawMessage) (string, error) {
			c, _, err := s.merchantCert()
			if err != nil {
				return "", err
			}
			i := certInfo(c)
			return fmt.Sprintf("rotate the merchant key: the key handler makes a new key; certificate %s (serial %s, SHA-256 %s) is kept to verify what it signed",
				i.Subject, i.Serial, i.SHA256), nil
		},
		Run: func(ctx context.Context, c admin.Caller, _ json.RawMessage) (any, error) { return s.rotateKey(ctx, c) }})
}

// rotateKey asks the key handler for a new key (the request file, then a
// restart), waits until it runs with it, and publishes the new certificate.
func (s *Supervisor) rotateKey(ctx context.Context, by admin.Caller) (any, error) {
	old, _, err := s.merchantCert()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	cs := s.status.Compartments[khName]
	pid := 0
	if cs != nil && cs.State == Running {
		pid = cs.Pid
	}
	s.mu.Unlock()
	if pid == 0 {
		return nil, fmt.Errorf("the key handler is not running: start it (e2sctl compartment start keyhandler, as an operator), then approve a new rotation")
	}
	req := filepath.Join(s.dataDir(khName), khRotateRequest)
	note := fmt.Sprintf("rotation approved by %s at %s\n", by, time.Now().UTC().Format(time.RFC3339))
	if err := durable.WriteFile(req, []byte(note), 0o600); err != nil {
		return nil, fmt.Errorf("ask the key handler for a new key: %w", err)
	}
	if os.Geteuid() == 0 {
		uid, gid := s.cfg.Compartments[khName].UID, s.cfg.Compartments[khName].GID
		if err := os.Chown(req, uid, gid); err != nil {
			os.Remove(req)
			return nil, fmt.Errorf("ask the key handler for a new key: %w", err)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil, fmt.Errorf("restart the key handler (pid %d): %w; it makes the new key at its next start", pid, err)
	}
	deadline := time.Now().Add(rotateWait)
	for {
		s.mu.Lock()
		cs := s.status.Compartments[khName]
		running := cs != nil && cs.State == Running && cs.Pid != pid
		s.mu.Unlock()
		if running {
			if c, _, err := s.merchantCert(); err == nil && !c.Equal(old) {
				if _, err := os.Stat(req); errors.Is(err, os.ErrNotExist) {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the key handler did not come back with a new key within %s; see its log (e2sctl status), the request stays until it does", rotateWait)
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	if err := s.publishMerchantCert(); err != nil {
		return nil, fmt.Errorf("new key made, but its certificate was not published: %w", err)
	}
	info, err := s.keyInfo()
	if err != nil {
		return nil, err
	}
	s.log.Info("merchant key rotated", "old_sha256", certInfo(old).SHA256, "new_sha256", info.Certificate.SHA256, "by", by.String())
	return info, nil
}
