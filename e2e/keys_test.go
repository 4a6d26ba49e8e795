package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

// The keyadmin's key commands through the real appliance (issue 13 item
// 3): key show and export-cert name the certificate in force; key rotate
// is two-person, makes the key handler a new key, publishes its
// certificate, and leaves every contract the old key signed verifiable
// with the old certificate, while new contracts carry the new key — also
// for an offer made before the rotation and accepted after it.
func TestKeyRotate(t *testing.T) {
	const uidKai = uidBob // the second keyadmin
	pol := policyDir(t, map[string]func(string) string{"roles.yaml": func(s string) string {
		return s + "  - {uid: 61008, name: e2sbob, roles: [keyadmin]}\n"
	}})
	acqConfig, startAcquirer := puAcquirer(t)
	a := startAppliance(t, acqConfig+"policy_dir: "+pol+"\n")
	startAcquirer(a)
	mia, bob := puNewIdentity(t, "Mia"), puNewIdentity(t, "Bob")
	puEnrol(t, a, mia, bob)
	bobC := puClient(a, bob)
	const basketJSON = `{"items":[{"sku":"LIC-STD","qty":1}]}`

	certOf := func(t *testing.T, p []byte) *x509.Certificate {
		t.Helper()
		blk, _ := pem.Decode(p)
		if blk == nil {
			t.Fatalf("no PEM certificate: %q", p)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	served := func(t *testing.T) *x509.Certificate {
		_, p := a.do("GET", "/cgi-bin/keyhandler/certificate", "", nil)
		return certOf(t, p)
	}
	fp := func(c *x509.Certificate) string {
		s := sha256.Sum256(c.Raw)
		return strings.ToUpper(hex.EncodeToString(s[:]))
	}
	offer := func(t *testing.T) []byte {
		t.Helper()
		resp, der := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/offer", "application/json", []byte(basketJSON), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("offer = %d %s", resp.StatusCode, der)
		}
		acc, err := cms.AddSigner(der, nil, bob.key, []*x509.Certificate{bob.cert}, cms.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return acc
	}
	accept := func(t *testing.T, acc []byte) []byte {
		t.Helper()
		resp, body := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/accept", "application/json", puAccept(acc, puPAN), nil)
		if resp.StatusCode != 201 {
			t.Fatalf("accept = %d %s", resp.StatusCode, body)
		}
		return body
	}
	signers := func(t *testing.T, contract []byte, anchors ...*x509.Certificate) []*x509.Certificate {
		t.Helper()
		s, err := cms.Verify(contract, cms.VerifyOptions{Registered: append(anchors, bob.cert)})
		if err != nil {
			t.Fatalf("contract does not verify: %v", err)
		}
		return []*x509.Certificate{s.Signers[0].Certificate, s.Signers[2].Certificate}
	}

	old := served(t)
	contractA := accept(t, offer(t))
	pendingAcc := offer(t) // accepted after the rotation

	t.Run("show and export-cert", func(t *testing.T) {
		for _, uid := range []int{uidKeys, uidAda} {
			code, out := a.ctl(uid, "key", "show")
			var info struct {
				Certificate struct{ SHA256, Serial string }
				KeyFile     string `json:"key_file"`
				Published   string
			}
			if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Certificate.SHA256 != fp(old) ||
				info.KeyFile != filepath.Join(a.dataDir(), "keyhandler", "merchant.key") {
				t.Fatalf("key show as uid %d: exit %d\n%s", uid, code, out)
			}
			if pub, err := os.ReadFile(info.Published); err != nil || !certOf(t, pub).Equal(old) {
				t.Fatalf("published certificate %s: %v", info.Published, err)
			}
		}
		dir, err := os.MkdirTemp("", "e2s-export") // the auditor's account writes here
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o777)
		file := filepath.Join(dir, "merchant.pem")
		if code, out := a.ctl(uidAda, "key", "export-cert", file); code != 0 {
			t.Fatalf("export-cert: exit %d\n%s", code, out)
		}
		if b, err := os.ReadFile(file); err != nil || !certOf(t, b).Equal(old) {
			t.Fatalf("exported certificate: %v", err)
		}
	})

	var proposal string
	t.Run("rotate takes two keyadmins", func(t *testing.T) {
		if code, out := a.ctl(uidAda, "key", "rotate"); code != 3 || !strings.Contains(out, `needs authorization "keys.manage"`) {
			t.Fatalf("auditor rotates: exit %d\n%s", code, out)
		}
		id, out := a.propose(t, uidKeys, "key", "rotate")
		proposal = id
		if !strings.Contains(out, "rotate the merchant key") || !strings.Contains(out, fp(old)) {
			t.Fatalf("the approver is not shown what the rotation does:\n%s", out)
		}
		if code, out := a.ctl(uidKeys, "approve", id); code != 3 || !strings.Contains(out, "[adm.same_person]") {
			t.Fatalf("proposer approves: exit %d\n%s", code, out)
		}
		if !served(t).Equal(old) {
			t.Fatal("the key changed before the approval")
		}
		code, out := a.ctl(uidKai, "approve", id)
		if code != 0 || !strings.Contains(out, `"previous"`) {
			t.Fatalf("second keyadmin approves: exit %d\n%s", code, out)
		}
	})

	cur := served(t)
	t.Run("the new certificate is served and published", func(t *testing.T) {
		if cur.Equal(old) {
			t.Fatal("the key handler serves the old certificate")
		}
		pub := filepath.Join(a.runDir(), "public")
		if b, err := os.ReadFile(filepath.Join(pub, "merchant.pem")); err != nil || !certOf(t, b).Equal(cur) {
			t.Fatalf("published merchant.pem: %v", err)
		}
		if b, err := os.ReadFile(filepath.Join(pub, "merchant-"+old.SerialNumber.Text(16)+".pem")); err != nil || !certOf(t, b).Equal(old) {
			t.Fatalf("published old certificate: %v", err)
		}
		if code, out := a.ctl(uidAda, "key", "show"); code != 0 || !strings.Contains(out, fp(cur)) || !strings.Contains(out, fp(old)) {
			t.Fatalf("key show after rotation: exit %d\n%s", code, out)
		}
	})

	t.Run("old contracts verify with the old certificate, new ones carry the new key", func(t *testing.T) {
		if s := signers(t, contractA, old); !s[0].Equal(old) || !s[1].Equal(old) {
			t.Fatal("contract made before the rotation is not the old key's")
		}
		if _, err := cms.Verify(contractA, cms.VerifyOptions{Registered: []*x509.Certificate{cur, bob.cert}}); err == nil {
			t.Fatal("the old contract verifies with the new certificate alone")
		}
		// Offered before, accepted after: the old key's offer, the new key's confirmation.
		if s := signers(t, accept(t, pendingAcc), old, cur); !s[0].Equal(old) || !s[1].Equal(cur) {
			t.Fatal("offer of the old key accepted after the rotation: signers are not old, then new")
		}
		contractC := accept(t, offer(t))
		if s := signers(t, contractC, cur); !s[0].Equal(cur) || !s[1].Equal(cur) {
			t.Fatal("contract after the rotation is not the new key's")
		}
		if _, err := cms.Verify(contractC, cms.VerifyOptions{Registered: []*x509.Certificate{old, bob.cert}}); err == nil {
			t.Fatal("the new contract verifies with the old certificate")
		}
	})

	t.Run("audited", func(t *testing.T) {
		var proposed, approved bool
		for _, r := range a.adminRecords(t, auditlog.Filter{Script: "key.rotate"}) {
			proposed = proposed || r.Reason == "adm.proposed"
		}
		for _, r := range a.adminRecords(t, auditlog.Filter{Script: "approve"}) {
			approved = approved || r.Decision == "allow" && strings.Contains(r.Detail, "approved proposal "+proposal) && strings.Contains(r.Detail, "rotate the merchant key")
		}
		if !proposed || !approved {
			t.Fatalf("proposal audited %v, approval audited %v", proposed, approved)
		}
		if !bytes.Contains([]byte(a.logs.String()), []byte("merchant key rotated")) {
			t.Fatal("no log line of the rotation")
		}
	})
}
