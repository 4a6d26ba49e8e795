package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

// e2sClient is the e2s binary with its own configuration, keystore and
// certstore in a fresh directory: a business client's machine.
type e2sClient struct {
	t   *testing.T
	bin string
	dir string
	env []string
}

func newE2sClient(t *testing.T, label string) *e2sClient {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "e2s")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/e2s").CombinedOutput(); err != nil {
		t.Fatalf("build e2s: %v\n%s", err, out)
	}
	cfg := "version: 1\ncredential: " + label + "\nkeystore:\n  dir: keystore\ncertstore:\n  dir: certstore\n"
	if err := os.WriteFile(filepath.Join(dir, "e2s.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &e2sClient{t: t, bin: bin, dir: dir, env: append(os.Environ(), "E2S_PASSWORD=correct horse battery staple")}
}

// run runs e2s and returns its standard output and error and exit code.
func (c *e2sClient) run(extraEnv []string, args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, append([]string{"-config", filepath.Join(c.dir, "e2s.yaml")}, args...)...)
	cmd.Dir = c.dir
	cmd.Env = append(append([]string{}, c.env...), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("e2s %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

func (c *e2sClient) mustRun(extraEnv []string, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(extraEnv, args...)
	if code != 0 {
		c.t.Fatalf("e2s %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// TestBuyCLI buys system to system with "e2s buy" through the real
// appliance: the buyer's key lives in the e2s keystore, its certificate is
// enrolled with the merchant, the merchant's certificate is in the e2s
// certstore. e2s browses the private catalogue, checks the signed offer,
// signs the acceptance, checks the contract's three signatures and the
// countersignature; after the back office confirms delivery it fetches and
// opens the delivery and sends the signed acknowledgement, which the
// appliance stores with the order.
func TestBuyCLI(t *testing.T) {
	acqConfig, startAcquirer := puAcquirer(t)
	a := startAppliance(t, acqConfig)
	startAcquirer(a)

	// The business client's credential, made by e2s itself.
	c := newE2sClient(t, "acme-buyer")
	c.mustRun(nil, "keygen", "-type", "ecdsa-p256")
	certPEM := c.mustRun(nil, "cert", "export")
	blk, _ := pem.Decode([]byte(certPEM))
	if blk == nil {
		t.Fatalf("cert export: %q", certPEM)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	buyer := &puIdentity{name: "acme-buyer", cert: cert}
	mia := puNewIdentity(t, "Mia")
	puEnrol(t, a, mia, buyer)

	// The merchant's certificate, checked out of band, into the certstore.
	merchant := a.merchantCert(t)
	merchantFile := filepath.Join(c.dir, "merchant.pem")
	os.WriteFile(merchantFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: merchant.Raw}), 0o644)
	c.mustRun(nil, "certstore", "add", "merchant", merchantFile)
	tlsPEM := filepath.Join(a.dataDir(), "outside", "tls", "tls.pem")
	out := filepath.Join(c.dir, "orders")
	card := []string{"E2S_CARD=" + puPAN + " " + puExpiry}
	common := []string{"-url", a.URL, "-cacert", tlsPEM, "-out", out}

	t.Run("the organisation's catalogue", func(t *testing.T) {
		stdout := c.mustRun(nil, append([]string{"buy", "-list"}, common...)...)
		for _, want := range []string{"buyer acme-buyer of ACME Ltd (limit 2000.00 EUR, categories software, documents)",
			"159.00 EUR net, VAT 19% (list 199.00 EUR)", "SUP-1Y", "not among your categories", "terms: ACME framework contract"} {
			if !strings.Contains(stdout, want) {
				t.Fatalf("e2s buy -list lacks %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("an offer above -max is not accepted", func(t *testing.T) {
		stdout, stderr, code := c.run(card, append([]string{"buy", "-items", "LIC-STD=1", "-max", "10000"}, common...)...)
		if code != 1 || !strings.Contains(stderr, "above -max") || !strings.Contains(stdout, "signature verified") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
	})

	t.Run("a category the buyer may not buy is refused", func(t *testing.T) {
		stdout, stderr, code := c.run(card, append([]string{"buy", "-items", "SUP-1Y=1"}, common...)...)
		if code != 1 || !strings.Contains(stderr, "SUP-1Y is not among the categories you may buy") {
			t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
		}
	})

	t.Run("an offer or contract altered on the way is refused", func(t *testing.T) {
		// A middlebox terminates TLS (e2s trusts its certificate) and reaches
		// the appliance with the buyer's own TLS credential: only the CMS
		// signatures protect the documents now.
		ks, err := keystore.OpenFile(filepath.Join(c.dir, "keystore"), "correct horse battery staple")
		if err != nil {
			t.Fatal(err)
		}
		cred, err := ks.Credential("acme-buyer")
		if err != nil {
			t.Fatal(err)
		}
		up := a.httpClient()
		tr := up.Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cred.Certificate().Raw}, PrivateKey: cred.Signer}}
		up.Transport = tr
		var alter atomic.Value // the script whose answer is altered
		var accepted atomic.Bool
		var unavailable atomic.Int32 // accept calls still to be answered 503 without forwarding
		mitm := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if strings.HasSuffix(r.URL.Path, "/accept") && unavailable.Add(-1) >= 0 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				io.WriteString(w, `{"error":"payment_unavailable","message":"the acquirer did not answer; try again"}`)
				return
			}
			req, _ := http.NewRequest(r.Method, a.URL+r.URL.RequestURI(), bytes.NewReader(body))
			for _, h := range []string{"Content-Type", "E2s-Signature", "E2s-Buyer", "E2s-Time", "E2s-Nonce"} {
				if v := r.Header.Get(h); v != "" {
					req.Header.Set(h, v)
				}
			}
			resp, err := up.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			answer, _ := io.ReadAll(resp.Body)
			if strings.HasSuffix(r.URL.Path, "/accept") && resp.StatusCode/100 == 2 {
				accepted.Store(true)
			}
			if strings.HasSuffix(r.URL.Path, "/"+alter.Load().(string)) {
				answer = bytes.Replace(answer, []byte(`"qty":2`), []byte(`"qty":3`), 1)
			}
			w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
			w.WriteHeader(resp.StatusCode)
			w.Write(answer)
		}))
		defer mitm.Close()
		mitmPEM := filepath.Join(c.dir, "mitm.pem")
		os.WriteFile(mitmPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: mitm.Certificate().Raw}), 0o644)
		via := []string{"-url", mitm.URL, "-cacert", mitmPEM, "-out", filepath.Join(c.dir, "altered")}

		alter.Store("offer")
		stdout, stderr, code := c.run(card, append([]string{"buy", "-items", "LIC-STD=2"}, via...)...)
		if code != 1 || !strings.Contains(stderr, "offer: verify") || accepted.Load() {
			t.Fatalf("altered offer: exit %d, accepted %v\n%s%s", code, accepted.Load(), stdout, stderr)
		}
		alter.Store("accept")
		stdout, stderr, code = c.run(card, append([]string{"buy", "-items", "LIC-STD=2"}, via...)...)
		if code != 1 || !strings.Contains(stderr, "contract: verify") || !accepted.Load() {
			t.Fatalf("altered contract: exit %d\n%s%s", code, stdout, stderr)
		}
		if m, _ := filepath.Glob(filepath.Join(c.dir, "altered", "contract-*")); len(m) != 0 {
			t.Fatalf("e2s saved an altered contract: %v", m)
		}

		// Payment unavailable once: e2s sends the same acceptance again.
		alter.Store("nothing")
		accepted.Store(false)
		unavailable.Store(1)
		stdout, stderr, code = c.run(card, append([]string{"buy", "-items", "DOC-SPEC=2", "-retries", "1"}, via...)...)
		if code != 0 || !strings.Contains(stdout, "503 payment_unavailable") || !strings.Contains(stdout, "sending the same acceptance again") ||
			!strings.Contains(stdout, "all verified") || !accepted.Load() {
			t.Fatalf("accept after 503: exit %d\n%s%s", code, stdout, stderr)
		}
	})

	var orderID string
	t.Run("offer, acceptance, contract", func(t *testing.T) {
		stdout := c.mustRun(card, append([]string{"buy", "-items", "LIC-STD=2,DOC-SPEC=1"}, common...)...)
		t.Logf("e2s buy -items LIC-STD=2,DOC-SPEC=1:\n%s", stdout)
		for _, want := range []string{"buyer acme-buyer of ACME Ltd", "signature verified", "VAT 19%", "VAT  7%",
			"gross 430.85 EUR", "signed by the merchant, by you and countersigned by the merchant; all verified", "e2s buy -url"} {
			if !strings.Contains(stdout, want) {
				t.Fatalf("e2s buy output lacks %q:\n%s", want, stdout)
			}
		}
		m := regexp.MustCompile(`contract ([0-9a-f]{32})`).FindStringSubmatch(stdout)
		if m == nil {
			t.Fatalf("no order id in:\n%s", stdout)
		}
		orderID = m[1]
		contract, err := os.ReadFile(filepath.Join(out, "contract-"+orderID+".p7m"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := cms.Verify(contract, cms.VerifyOptions{Registered: []*x509.Certificate{merchant, cert}})
		if err != nil || len(s.Signers) != 3 || !s.Signers[1].Certificate.Equal(cert) {
			t.Fatalf("saved contract: %v", err)
		}
		// The saved acceptance sent again (as after a failure): the same
		// contract, the order charged once.
		again := c.mustRun(card, append([]string{"buy", "-resume", filepath.Join(out, "acceptance-"+orderID+".p7m")}, common...)...)
		if !strings.Contains(again, "contract "+orderID+" (accepted before: the same contract)") {
			t.Fatalf("e2s buy -resume:\n%s", again)
		}
		if again, _ := os.ReadFile(filepath.Join(out, "contract-"+orderID+".p7m")); !bytes.Equal(again, contract) {
			t.Fatal("the contract sent again differs")
		}
		// The appliance's side: the order, authorised, with the same
		// contract, handed to the back office, and the audit trail.
		resp, body := puDo(t, a, puClient(a, mia), "GET", "/cgi-bin/purchasing/order/"+orderID, "", nil, nil)
		var o struct {
			Status        string `json:"status"`
			Contract      []byte `json:"contract"`
			Authorization struct {
				Approved bool `json:"approved"`
			} `json:"authorization"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &o) != nil || o.Status != "accepted" || !o.Authorization.Approved || !bytes.Equal(o.Contract, contract) {
			t.Fatalf("order as the manager reads it = %d %s", resp.StatusCode, body)
		}
		a.audited(func(r auditlog.Record) bool {
			return r.Script == "purchasing/accept" && r.Caller == "outside" && r.Decision == "allow" && r.Status == 201
		})
		a.audited(func(r auditlog.Record) bool {
			return r.Script == "payment/authorize" && r.Caller == "purchasing" && r.Decision == "allow" && r.Status == 200
		})
		if _, err := os.Stat(filepath.Join(a.dataDir(), "inside", "spool", "orders", orderID+".json")); err != nil {
			t.Fatalf("order not handed to the back office: %v", err)
		}
	})
	if orderID == "" {
		t.FailNow()
	}

	t.Run("delivery, opened, acknowledged", func(t *testing.T) {
		// Before the back office confirms, there is nothing to fetch.
		stdout, stderr, code := c.run(nil, append([]string{"buy", "-order", orderID}, common...)...)
		if code != 1 || !strings.Contains(stderr, "not_delivered") {
			t.Fatalf("delivery before confirmation: exit %d\n%s%s", code, stdout, stderr)
		}
		confirmDelivery(t, a, orderID)
		stdout = c.mustRun(nil, append([]string{"buy", "-order", orderID, "-wait", "3m"}, common...)...)
		t.Logf("e2s buy -order %s:\n%s", orderID, stdout)
		if !strings.Contains(stdout, "signed by the merchant (verified), decrypted for you") || !strings.Contains(stdout, "sent and accepted: order "+orderID+" acknowledged") {
			t.Fatalf("e2s buy -order:\n%s", stdout)
		}
		m := regexp.MustCompile(`delivery of [0-9a-f]{32}: (\S+), (\d+) bytes`).FindStringSubmatch(stdout)
		if m == nil {
			t.Fatalf("no document name in:\n%s", stdout)
		}
		doc, err := os.ReadFile(filepath.Join(out, m[1]))
		if err != nil || !bytes.Contains(doc, []byte(orderID)) {
			t.Fatalf("opened document %s: %v\n%s", m[1], err, doc)
		}
		// The appliance's side: the order is acknowledged with that file.
		resp, body := puDo(t, a, puClient(a, mia), "GET", "/cgi-bin/purchasing/order/"+orderID, "", nil, nil)
		var o struct {
			Status string `json:"status"`
			Buyer  string `json:"buyer"`
			Ack    *struct {
				FileName string `json:"file_name"`
				FileSize int    `json:"file_size"`
			} `json:"acknowledgement"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &o) != nil || o.Status != "acknowledged" || o.Buyer != buyer.fp() ||
			o.Ack == nil || o.Ack.FileName != m[1] || o.Ack.FileSize != len(doc) {
			t.Fatalf("order after the acknowledgement (read by the manager) = %d %s", resp.StatusCode, body)
		}
		a.audited(func(r auditlog.Record) bool {
			return r.Script == "purchasing/ack" && r.Caller == "outside" && r.Decision == "allow" && r.Status == 200
		})
	})
}
