package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	vnetns "github.com/vishvananda/netns"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/internal/sim/acquirer"
)

// The acquirer simulator on the internal network, and its approving card.
const (
	puAcquirerAddr = "10.77.0.10"
	puAcquirerPort = "8583"
	puPAN          = "4111111111111111"
	puExpiry       = "12/30"
	puBridge       = "e2sint0"
)

// puIdentity is a buyer's key and self-issued certificate (ECDSA P-256).
type puIdentity struct {
	name string
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func puNewIdentity(t testing.TB, name string) *puIdentity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name, Organization: []string{"ACME Ltd"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageEmailProtection},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &puIdentity{name: name, key: key, cert: cert}
}

func (id *puIdentity) fp() string {
	s := sha256.Sum256(id.cert.Raw)
	return hex.EncodeToString(s[:])
}

func (id *puIdentity) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.cert.Raw}))
}

// puAcquirer makes the acquirer simulator's certificate and returns the
// appliance configuration naming it, and a start function that runs the
// simulator on the internal network (in the internal network's namespace,
// which the supervisor makes when it starts inside).
func puAcquirer(t *testing.T) (config string, start func(a *appliance)) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "acquirer.pem"), filepath.Join(dir, "acquirer.key")
	cert, err := acquirer.LoadOrCreateCert(certFile, keyFile, []net.IP{net.ParseIP(puAcquirerAddr)})
	if err != nil {
		t.Fatal(err)
	}
	config = "payment:\n  acquirer: " + puAcquirerAddr + ":" + puAcquirerPort + "\n  acquirer_cert: " + certFile + "\n"
	start = func(a *appliance) {
		ns := puInternalNS(t, a)
		out, err := exec.Command("ip", "-n", ns, "addr", "add", puAcquirerAddr+"/24", "dev", puBridge).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "File exists") {
			t.Fatalf("acquirer address: %v %s", err, out)
		}
		t.Cleanup(func() {
			exec.Command("ip", "-n", ns, "addr", "del", puAcquirerAddr+"/24", "dev", puBridge).Run()
		})
		l := listenIn(t, filepath.Join("/run/netns", ns), puAcquirerAddr+":"+puAcquirerPort)
		t.Cleanup(func() { l.Close() })
		s := &acquirer.Server{Cards: acquirer.DefaultCards(), Log: slog.New(slog.DiscardHandler)}
		go s.Serve(l, cert)
	}
	return config, start
}

// puInternalNS is the name of the internal network's namespace (under
// /run/netns): the namespace of the peer of the inside compartment's eth0.
func puInternalNS(t *testing.T, a *appliance) string {
	t.Helper()
	st, err := a.status()
	if err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(st.Compartments["inside"].Pid)
	ipIn := func(args ...string) []byte {
		out, err := exec.Command("nsenter", append([]string{"-t", pid, "-n", "ip", "-j"}, args...)...).Output()
		if err != nil {
			t.Fatalf("ip %v in inside's namespace: %v", args, err)
		}
		return out
	}
	var links []struct {
		NetnsID *int `json:"link_netnsid"`
	}
	json.Unmarshal(ipIn("link", "show", "eth0"), &links)
	var ids []struct {
		NSID int    `json:"nsid"`
		Name string `json:"name"`
	}
	json.Unmarshal(ipIn("netns", "list-id"), &ids)
	for _, id := range ids {
		if len(links) == 1 && links[0].NetnsID != nil && id.NSID == *links[0].NetnsID && id.Name != "" {
			return id.Name
		}
	}
	t.Fatalf("no named namespace holds the peer of inside's eth0 (%+v, %+v)", links, ids)
	return ""
}

// listenIn opens a TCP listener inside the network namespace at nsPath; the
// socket stays in that namespace whichever thread serves it.
func listenIn(t *testing.T, nsPath, addr string) net.Listener {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := vnetns.Set(ns); err != nil {
		t.Fatal(err)
	}
	l, lerr := net.Listen("tcp", addr)
	if err := vnetns.Set(orig); err != nil {
		panic("cannot return to the test's network namespace: " + err.Error())
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	return l
}

// puEnrol writes the operator's enrolment file: organisation acme (contract
// price for LIC-STD, its own terms) with Mia as purchasing manager and Bob
// as buyer (software and documents, 2000.00 in all).
func puEnrol(t *testing.T, a *appliance, mia, bob *puIdentity) {
	t.Helper()
	doc := map[string]any{"orgs": []any{map[string]any{
		"id": "acme", "name": "ACME Ltd", "terms": "ACME framework contract 2026: payment 60 days net.",
		"prices": map[string]int64{"LIC-STD": 15900},
		"members": []any{
			map[string]any{"name": mia.name, "role": "manager", "certificate": mia.pem(), "limit_cents": 10_000_000, "categories": []string{"software", "documents", "services"}},
			map[string]any{"name": bob.name, "role": "buyer", "certificate": bob.pem(), "limit_cents": 200_000, "categories": []string{"software", "documents"}},
		},
	}}}
	b, _ := json.Marshal(doc)
	dir := filepath.Join(a.dataDir(), "purchasing")
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "enrolment.json.new")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	os.Chown(tmp, int(sys.Uid), int(sys.Gid))
	if err := os.Rename(tmp, filepath.Join(dir, "enrolment.json")); err != nil {
		t.Fatal(err)
	}
}

// puClient is an HTTP client of the appliance for id: it presents id's
// certificate in the TLS handshake (a hint only) and signs every request
// with id's key (puSign), as e2s buy and the storefront do.
func puClient(a *appliance, id *puIdentity) *http.Client {
	c := a.httpClient()
	tr := c.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{id.cert.Raw}, PrivateKey: id.key, Leaf: id.cert}}
	c.Transport = puSigner{id: id, next: tr}
	return c
}

// puTLSClient presents id's certificate in the TLS handshake and signs
// nothing: what a client without the key (or outside) can do.
func puTLSClient(a *appliance, id *puIdentity) *http.Client {
	c := puClient(a, id)
	c.Transport = c.Transport.(puSigner).next
	return c
}

// puSigner signs each request it carries.
type puSigner struct {
	id   *puIdentity
	next http.RoundTripper
}

func (s puSigner) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	for k, v := range puSign(s.id, r.Method, r.URL.Path, r.URL.RawQuery, body) {
		r.Header.Set(k, v)
	}
	return s.next.RoundTrip(r)
}

// puSign is the headers of a request signed by id (API.md "Who you are").
func puSign(id *puIdentity, method, path, query string, body []byte) map[string]string {
	ts, nonce := time.Now().UTC().Format(time.RFC3339), hex.EncodeToString(puNonce())
	sig, err := cms.SignHeader(api.RequestToSign(method, path, query, body, ts, nonce, id.fp()), id.key, id.cert)
	if err != nil {
		panic(err)
	}
	return map[string]string{api.HeaderSignature: sig, api.HeaderBuyer: id.fp(), api.HeaderTime: ts, api.HeaderNonce: nonce}
}

// puSignWith is puSign at a given time and with a given nonce.
func puSignWith(id *puIdentity, method, path, query string, body []byte, at time.Time, nonce string) map[string]string {
	ts := at.UTC().Format(time.RFC3339)
	sig, err := cms.SignHeader(api.RequestToSign(method, path, query, body, ts, nonce, id.fp()), id.key, id.cert)
	if err != nil {
		panic(err)
	}
	return map[string]string{api.HeaderSignature: sig, api.HeaderBuyer: id.fp(), api.HeaderTime: ts, api.HeaderNonce: nonce}
}

func puNonce() []byte {
	b := make([]byte, 16)
	rand.Read(b)
	return b
}

// puManagerChange sends a manager's change to the organisation the only way
// purchasing accepts it: a request signed by the manager. The TLS client
// certificate alone is refused.
func puManagerChange(t *testing.T, a *appliance, mgr *puIdentity, m map[string]any) (*http.Response, []byte) {
	t.Helper()
	body, _ := json.Marshal(m)
	return puDo(t, a, a.httpClient(), "POST", "/cgi-bin/purchasing/buyers", "application/json", body, puSign(mgr, "POST", "/cgi-bin/purchasing/buyers", "", body))
}

func puDo(t *testing.T, a *appliance, c *http.Client, method, path, ctype string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	saved := a.client
	a.client = c
	defer func() { a.client = saved }()
	if len(hdr) == 0 {
		return a.do(method, path, ctype, body)
	}
	req, err := http.NewRequest(method, a.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp, buf.Bytes()
}

func puErr(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(body, &e)
	return e.Error
}

func puAccept(acc []byte, pan string) []byte {
	b, _ := json.Marshal(api.AcceptRequest{Acceptance: acc, Card: api.Card{PAN: pan, Expiry: puExpiry}})
	return b
}

// puOpenssl runs openssl cms -verify over der with the given trust anchors.
func puOpenssl(t *testing.T, der []byte, anchors ...*x509.Certificate) ([]byte, error) {
	t.Helper()
	dir := t.TempDir()
	var ca []byte
	for _, c := range anchors {
		ca = append(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	os.WriteFile(filepath.Join(dir, "in.der"), der, 0o600)
	os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o600)
	return exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", filepath.Join(dir, "in.der"),
		"-CAfile", filepath.Join(dir, "ca.pem"), "-purpose", "any").CombinedOutput()
}

// killAndWait kill -9s the compartments and waits until the supervisor has
// them running again and the gate reaches purchasing.
func puKill(t *testing.T, a *appliance, names ...string) {
	t.Helper()
	st, _ := a.status()
	old := map[string]int{}
	for _, n := range names {
		old[n] = st.Compartments[n].Pid
		if err := syscall.Kill(old[n], syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	a.waitRunning(old)
	for i := 0; i < 100; i++ { // the gate learns of the new processes right after they are up
		ok := true
		for _, p := range []string{"/cgi-bin/purchasing/catalogue", "/cgi-bin/keyhandler/certificate", "/cgi-bin/payment/health"} {
			if resp, _ := a.do("GET", p, "", nil); resp.StatusCode != 200 {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("compartments did not answer after the restart")
}

// TestPurchase is the secure purchasing protocol (E2S §2.5, §6.2.1.1)
// through the real appliance — outside, gate agent, purchasing, key
// handler, payment with the acquirer simulator on the internal network,
// inside with the back-office spool: browse, private catalogue, signed
// offer, acceptance, contract, payment, order to the back office, delivery
// after its confirmation, acknowledgement, statement; tampering at each
// step refused; kill -9 of the compartments mid-flow loses nothing.
func TestPurchase(t *testing.T) {
	acqConfig, startAcquirer := puAcquirer(t)
	// The test's own role book, so the auditor can explain records.
	a := startAppliance(t, acqConfig+"policy_dir: "+policyDir(t, nil)+"\n")
	startAcquirer(a)
	mia, bob, eve := puNewIdentity(t, "Mia"), puNewIdentity(t, "Bob"), puNewIdentity(t, "Eve")
	puEnrol(t, a, mia, bob)
	bobC, miaC, eveC, anon := puClient(a, bob), puClient(a, mia), puClient(a, eve), a.httpClient()

	_, certPEM := a.do("GET", "/cgi-bin/keyhandler/certificate", "", nil)
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		t.Fatalf("merchant certificate %q", certPEM)
	}
	merchant, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	const basketJSON = `{"items":[{"sku":"LIC-STD","qty":2},{"sku":"DOC-SPEC","qty":1}]}`
	// 2×159.00 (contract price) @19% + 49.00 @7%
	const gross1 = 31800 + 4900 + 6042 + 343

	t.Run("browse: public catalogue, then private after authentication", func(t *testing.T) {
		if resp, _ := puDo(t, a, anon, "GET", "/cgi-bin/purchasing/catalogue", "", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("public catalogue = %d", resp.StatusCode)
		}
		if resp, body := puDo(t, a, anon, "GET", "/cgi-bin/purchasing/private", "", nil, nil); resp.StatusCode != 401 || puErr(body) != "unauthenticated" {
			t.Fatalf("anonymous private = %d %s", resp.StatusCode, body)
		}
		if resp, body := puDo(t, a, eveC, "GET", "/cgi-bin/purchasing/private", "", nil, nil); resp.StatusCode != 401 || puErr(body) != "unknown_buyer" {
			t.Fatalf("unregistered certificate = %d %s", resp.StatusCode, body)
		}
		resp, body := puDo(t, a, bobC, "GET", "/cgi-bin/purchasing/private", "", nil, nil)
		var pc struct {
			Terms    string               `json:"terms"`
			Buyer    api.MemberView       `json:"buyer"`
			Products []api.PrivateProduct `json:"products"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &pc) != nil || pc.Buyer.Fingerprint != bob.fp() || !strings.Contains(pc.Terms, "ACME") {
			t.Fatalf("private catalogue = %d %s", resp.StatusCode, body)
		}
		for _, p := range pc.Products {
			if p.SKU == "LIC-STD" && (p.PriceCents != 15900 || p.ListCents != 19900) {
				t.Fatalf("contract price %+v", p)
			}
		}
	})

	t.Run("signed login and header signature (B2B)", func(t *testing.T) {
		_, chBody := puDo(t, a, anon, "GET", "/cgi-bin/purchasing/login", "", nil, nil)
		var ch struct{ Challenge string }
		json.Unmarshal(chBody, &ch)
		login, _ := json.Marshal(api.LoginRequest{Type: "e2sgate.login.v1", Challenge: ch.Challenge, Fingerprint: bob.fp(), Time: time.Now().UTC().Format(time.RFC3339)})
		resp, body := puDo(t, a, anon, "POST", "/cgi-bin/purchasing/login", "application/json", login, puSign(bob, "POST", "/cgi-bin/purchasing/login", "", login))
		var ans api.LoginAnswer
		if resp.StatusCode != 200 || json.Unmarshal(body, &ans) != nil || ans.Session == "" {
			t.Fatalf("login = %d %s", resp.StatusCode, body)
		}
		if _, err := cms.Verify(ans.MerchantSignature, cms.VerifyOptions{Registered: []*x509.Certificate{merchant}}); err != nil {
			t.Fatalf("merchant's login answer: %v", err)
		}
		// The session is bound to Bob's key: every request in it is signed.
		inSession := puSign(bob, "GET", "/cgi-bin/purchasing/private", "", nil)
		inSession[api.HeaderSession] = ans.Session
		if resp, b := puDo(t, a, anon, "GET", "/cgi-bin/purchasing/private", "", nil, inSession); resp.StatusCode != 200 {
			t.Fatalf("private with session = %d %s", resp.StatusCode, b)
		}
		if resp, b := puDo(t, a, anon, "GET", "/cgi-bin/purchasing/private", "", nil, map[string]string{api.HeaderSession: ans.Session}); resp.StatusCode != 401 || puErr(b) != "signature_required" {
			t.Fatalf("private with the session value alone = %d %s", resp.StatusCode, b)
		}
		if resp, b := puDo(t, a, anon, "GET", "/cgi-bin/purchasing/private", "", nil, inSession); resp.StatusCode != 401 || puErr(b) != "replayed" {
			t.Fatalf("replayed request in session = %d %s", resp.StatusCode, b)
		}
		if resp, _ := puDo(t, a, anon, "POST", "/cgi-bin/purchasing/login", "application/json", login, puSign(eve, "POST", "/cgi-bin/purchasing/login", "", login)); resp.StatusCode != 401 {
			t.Fatalf("login signed by an unregistered key = %d", resp.StatusCode)
		}
		body = []byte(basketJSON)
		resp, der := puDo(t, a, anon, "POST", "/cgi-bin/purchasing/offer", "application/json", body, puSign(bob, "POST", "/cgi-bin/purchasing/offer", "", body))
		if resp.StatusCode != 200 {
			t.Fatalf("header-signed offer = %d %s", resp.StatusCode, der)
		}
		if s, err := cms.Verify(der, cms.VerifyOptions{Registered: []*x509.Certificate{merchant}}); err != nil || !bytes.Contains(s.Content, []byte(bob.fp())) {
			t.Fatalf("header-signed offer: %v", err)
		}
	})

	// offer gets Bob's signed offer for basket and adds his signature.
	offer := func(t *testing.T, basket string) (der, acc []byte, doc api.Offer) {
		t.Helper()
		resp, der := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/offer", "application/json", []byte(basket), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("offer = %d %s", resp.StatusCode, der)
		}
		s, err := cms.Verify(der, cms.VerifyOptions{Registered: []*x509.Certificate{merchant}})
		if err != nil {
			t.Fatalf("offer does not verify: %v", err)
		}
		if err := json.Unmarshal(s.Content, &doc); err != nil {
			t.Fatal(err)
		}
		acc, err = cms.AddSigner(der, nil, bob.key, []*x509.Certificate{bob.cert}, cms.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return der, acc, doc
	}

	var contract []byte
	var doc1 api.Offer
	t.Run("offer, acceptance, three-signature contract", func(t *testing.T) {
		der, acc, doc := offer(t, basketJSON)
		doc1 = doc
		if doc.Org != "acme" || doc.Buyer != bob.fp() || doc.GrossCents != gross1 || len(doc.VAT) != 2 {
			t.Fatalf("offer %+v", doc)
		}
		// Tampered at each step, refused.
		tampered := bytes.Replace(der, []byte(`"qty":2`), []byte(`"qty":3`), 1)
		tamperedAcc, _ := cms.AddSigner(tampered, nil, bob.key, []*x509.Certificate{bob.cert}, cms.SignOptions{})
		eveAcc, _ := cms.AddSigner(der, nil, eve.key, []*x509.Certificate{eve.cert}, cms.SignOptions{})
		own, _ := cms.Sign(bytes.Replace(puContent(t, der), []byte(`"unit_cents":15900`), []byte(`"unit_cents":100`), 1), bob.key, []*x509.Certificate{bob.cert}, cms.SignOptions{})
		for _, tt := range []struct {
			name, code string
			acc        []byte
			status     int
		}{
			{"offer line changed, then signed by the buyer", "bad_signature", tamperedAcc, 403},
			{"line changed after both signatures", "bad_signature", bytes.Replace(acc, []byte(`"qty":2`), []byte(`"qty":3`), 1), 403},
			{"price changed, signed by the buyer alone", "not_issued", own, 409},
			{"buyer signature from an unregistered key", "bad_signature", eveAcc, 403},
			{"merchant's signature only", "bad_signature", der, 403},
		} {
			resp, body := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/accept", "application/json", puAccept(tt.acc, puPAN), nil)
			if resp.StatusCode != tt.status || puErr(body) != tt.code {
				t.Errorf("%s: = %d %s, want %d %s", tt.name, resp.StatusCode, body, tt.status, tt.code)
			}
		}
		resp, body := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/accept", "application/json", puAccept(acc, puPAN), nil)
		if resp.StatusCode != 201 || resp.Header.Get("Location") != "/cgi-bin/purchasing/order/"+doc.OfferID {
			t.Fatalf("accept = %d %s", resp.StatusCode, body)
		}
		contract = body
		s, err := cms.Verify(contract, cms.VerifyOptions{Registered: []*x509.Certificate{merchant, bob.cert}})
		if err != nil || len(s.Signers) != 3 || !s.Signers[0].Certificate.Equal(merchant) || !s.Signers[1].Certificate.Equal(bob.cert) ||
			!s.Signers[2].Certificate.Equal(merchant) || len(s.Signers[1].CounterSignatures) != 1 || !bytes.Equal(s.Content, puContent(t, der)) {
			t.Fatalf("contract: %v", err)
		}
		if out, err := puOpenssl(t, contract, merchant, bob.cert); err != nil || !bytes.Contains(out, []byte(doc.OfferID)) {
			t.Fatalf("openssl cms -verify contract: %v\n%s", err, out)
		}
		// An altered contract verifies neither in Go nor in openssl, and is
		// no acceptance either.
		altered := bytes.Replace(contract, []byte(`"qty":2`), []byte(`"qty":3`), 1)
		if _, err := cms.Verify(altered, cms.VerifyOptions{Registered: []*x509.Certificate{merchant, bob.cert}}); err == nil {
			t.Fatal("altered contract verifies")
		}
		if out, err := puOpenssl(t, altered, merchant, bob.cert); err == nil {
			t.Fatalf("openssl verified an altered contract:\n%s", out)
		}
		if resp, _ := puDo(t, a, anon, "POST", "/cgi-bin/purchasing/accept", "application/json", puAccept(acc, puPAN), nil); resp.StatusCode != 401 {
			t.Fatalf("unsigned acceptance request = %d", resp.StatusCode)
		}
		if resp, _ := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/accept", "application/json", puAccept(contract, puPAN), nil); resp.StatusCode != 403 {
			t.Fatalf("contract as acceptance = %d", resp.StatusCode)
		}
		// Accepting again: the same contract, no second authorisation.
		if resp, body := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/accept", "application/json", puAccept(acc, puPAN), nil); resp.StatusCode != 200 || !bytes.Equal(body, contract) {
			t.Fatalf("second accept = %d", resp.StatusCode)
		}
		// Through the gate: purchasing → keyhandler/countersign, payment/authorize, inside/order,
		// each for Bob, whom purchasing proved; the acceptance's own record
		// names him too, as purchasing reported, not as outside said.
		bobUser := "buyer:" + bob.fp()
		for _, script := range []string{"keyhandler/countersign", "payment/authorize", "payment/limits", "inside/order"} {
			a.audited(func(r auditlog.Record) bool {
				return r.Caller == "purchasing" && r.Script == script && r.Decision == "allow" && r.Status/100 == 2 &&
					(r.User == bobUser || script == "payment/limits")
			})
		}
		acc201 := a.audited(func(r auditlog.Record) bool {
			return r.Caller == "outside" && r.Script == "purchasing/accept" && r.Status == 201
		})
		if acc201.User != bobUser || acc201.ClaimedUser != "cert:"+bob.fp()[:16] {
			t.Fatalf("acceptance's record: user %q claimed %q, want %q and outside's TLS hint", acc201.User, acc201.ClaimedUser, bobUser)
		}
		// The back office got the order.
		if _, err := os.Stat(filepath.Join(a.dataDir(), "inside", "spool", "orders", doc.OfferID+".json")); err != nil {
			t.Fatalf("order not spooled for the back office: %v", err)
		}
	})

	t.Run("outside reaches neither the key handler's scripts nor the delivery confirmation", func(t *testing.T) {
		for _, tt := range []struct{ path, ctype, reason string }{
			{"/cgi-bin/keyhandler/countersign", "application/pkcs7-mime", "pol.caller_clearance"},
			{"/cgi-bin/keyhandler/protect", "application/json", "pol.caller_clearance"},
			{"/cgi-bin/purchasing/delivered", "application/json", "pol.caller_not_permitted"},
			{"/cgi-bin/payment/authorize", "application/json", "pol.caller_clearance"},
		} {
			resp, body := puDo(t, a, bobC, "POST", tt.path, tt.ctype, []byte(`{"order_id":"`+doc1.OfferID+`"}`), nil)
			if resp.StatusCode != 403 || resp.Header.Get("X-E2s-Reason") != tt.reason {
				t.Errorf("%s = %d %s %s", tt.path, resp.StatusCode, resp.Header.Get("X-E2s-Reason"), body)
			}
		}
	})

	t.Run("over the limit, forbidden category, declined card", func(t *testing.T) {
		// 4×499.00 + 19% = 2375.24 > Bob's 2000.00.
		resp, body := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/offer", "application/json", []byte(`{"items":[{"sku":"LIC-PRO","qty":4}]}`), nil)
		if resp.StatusCode != 402 || puErr(body) != "over_limit" {
			t.Fatalf("over-limit offer = %d %s", resp.StatusCode, body)
		}
		resp, body = puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/offer", "application/json", []byte(`{"items":[{"sku":"SUP-1Y","qty":1}]}`), nil)
		if resp.StatusCode != 403 || puErr(body) != "category" {
			t.Fatalf("forbidden category = %d %s", resp.StatusCode, body)
		}
		_, acc, doc := offer(t, `{"items":[{"sku":"DOC-SPEC","qty":1}]}`)
		resp, body = puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/accept", "application/json", puAccept(acc, "4242424242424242"), nil)
		if resp.StatusCode != 402 || puErr(body) != "payment_declined" {
			t.Fatalf("unknown card = %d %s", resp.StatusCode, body)
		}
		if bytes.Contains(body, []byte("4242424242424242")) {
			t.Fatal("the card number came back in full")
		}
		if resp, _ := puDo(t, a, bobC, "GET", "/cgi-bin/purchasing/order/"+doc.OfferID, "", nil, nil); resp.StatusCode != 404 {
			t.Fatalf("declined offer became an order: %d", resp.StatusCode)
		}
	})

	var doc2 api.Offer
	t.Run("kill -9 purchasing, keyhandler and payment mid-flow: nothing lost", func(t *testing.T) {
		// An offer issued and signed by the buyer, then every compartment
		// of the flow dies before the acceptance arrives.
		_, acc, doc := offer(t, `{"items":[{"sku":"LIC-STD","qty":1}]}`)
		doc2 = doc
		puKill(t, a, "purchasing", "keyhandler", "payment")
		resp, body := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/accept", "application/json", puAccept(acc, puPAN), nil)
		if resp.StatusCode != 201 {
			t.Fatalf("accept after restart = %d %s", resp.StatusCode, body)
		}
		// The contract acknowledged to the buyer survives another crash.
		puKill(t, a, "purchasing", "keyhandler", "payment")
		for _, tt := range []struct {
			id       string
			contract []byte
		}{{doc1.OfferID, contract}, {doc.OfferID, body}} {
			resp, body := puDo(t, a, bobC, "GET", "/cgi-bin/purchasing/order/"+tt.id, "", nil, nil)
			var o api.Order
			if resp.StatusCode != 200 || json.Unmarshal(body, &o) != nil || !bytes.Equal(o.Contract, tt.contract) ||
				o.Status != api.StatusAccepted || o.Authorization == nil || !o.Authorization.Approved || o.BackOffice != "handed" {
				t.Fatalf("order %s after kill -9 = %d %s", tt.id, resp.StatusCode, body)
			}
		}
		// Sealed at rest: no order in clear in purchasing's data dir.
		filepath.Walk(filepath.Join(a.dataDir(), "purchasing"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() && !strings.HasSuffix(p, "enrolment.json") {
				if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(doc1.OfferID)) || bytes.Contains(b, []byte("LIC-STD")) {
					t.Errorf("%s holds an order in clear", p)
				}
			}
			return nil
		})
	})

	t.Run("delivery after the back office's confirmation, acknowledgement", func(t *testing.T) {
		if resp, body := puDo(t, a, bobC, "GET", "/cgi-bin/purchasing/delivery/"+doc1.OfferID, "", nil, nil); resp.StatusCode != 404 || puErr(body) != "not_delivered" {
			t.Fatalf("delivery before confirmation = %d %s", resp.StatusCode, body)
		}
		// The back office confirms through its spool; inside tells purchasing.
		conf := filepath.Join(a.dataDir(), "inside", "spool", "confirmations")
		for _, id := range []string{doc1.OfferID, doc2.OfferID} {
			b, _ := json.Marshal(map[string]string{"order_id": id, "delivered_at": time.Now().UTC().Format(time.RFC3339), "reference": "BO-" + id[:6]})
			if err := os.WriteFile(filepath.Join(conf, ".tmp-"+id), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(conf, ".tmp-"+id), filepath.Join(conf, id+".json")); err != nil {
				t.Fatal(err)
			}
		}
		// Wait until the back office's confirmations have gone through
		// inside to purchasing: both orders delivered and captured.
		for _, id := range []string{doc1.OfferID, doc2.OfferID} {
			var o api.Order
			for i := 0; i < 600; i++ {
				o = api.Order{}
				_, body := puDo(t, a, bobC, "GET", "/cgi-bin/purchasing/order/"+id, "", nil, nil)
				if json.Unmarshal(body, &o) == nil && o.Capture != nil && o.Capture.Captured {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if o.Status != api.StatusDelivered || o.Capture == nil || !o.Capture.Captured {
				t.Fatalf("order %s not delivered and captured after the confirmation: %+v", id, o)
			}
		}
		resp, msg := puDo(t, a, bobC, "GET", "/cgi-bin/purchasing/delivery/"+doc1.OfferID, "", nil, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("delivery = %d %s", resp.StatusCode, msg)
		}
		// Under full confinement inside moves each confirmation to done/
		// and tells purchasing once: nothing is left to re-send.
		puConfirmationsDone(t, a, doc1.OfferID, doc2.OfferID)
		if resp, _ := puDo(t, a, miaC, "GET", "/cgi-bin/purchasing/delivery/"+doc1.OfferID, "", nil, nil); resp.StatusCode != 404 {
			t.Fatalf("delivery to another member = %d", resp.StatusCode)
		}
		opened, err := cms.Open(msg, bob.cert, bob.key, cms.OpenOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{merchant}}})
		if err != nil || !opened.Compressed || !bytes.Contains(opened.Content, []byte("licence key 2:")) || !bytes.Contains(opened.Content, []byte(doc1.OfferID)) {
			t.Fatalf("open delivery: %v", err)
		}
		if _, err := cms.Open(msg, eve.cert, eve.key, cms.OpenOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{merchant}}}); err == nil {
			t.Fatal("someone else opened the delivery")
		}
		// A forged acknowledgement (Eve's key) is refused; Bob's is kept.
		eveAck, _ := cms.Acknowledge(opened.SignedData, opened.Content, "licence.txt", eve.key, []*x509.Certificate{eve.cert},
			cms.AckOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{merchant}}})
		if resp, body := puDo(t, a, anon, "POST", "/cgi-bin/purchasing/ack/"+doc1.OfferID, "application/pkcs7-mime", eveAck, nil); resp.StatusCode != 403 {
			t.Fatalf("forged acknowledgement = %d %s", resp.StatusCode, body)
		}
		ack, err := cms.Acknowledge(opened.SignedData, opened.Content, "licence.txt", bob.key, []*x509.Certificate{bob.cert},
			cms.AckOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{merchant}}})
		if err != nil {
			t.Fatal(err)
		}
		if resp, body := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/ack/"+doc1.OfferID, "application/pkcs7-mime", ack, nil); resp.StatusCode != 200 {
			t.Fatalf("acknowledgement = %d %s", resp.StatusCode, body)
		}
		puKill(t, a, "purchasing")
		resp, body := puDo(t, a, bobC, "GET", "/cgi-bin/purchasing/order/"+doc1.OfferID, "", nil, nil)
		var o struct {
			api.Order
			Ack *struct {
				FileName string `json:"file_name"`
			} `json:"acknowledgement"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &o) != nil || o.Status != api.StatusAcknowledged || o.Ack == nil ||
			o.Ack.FileName != "licence.txt" || o.Capture == nil || !o.Capture.Captured || bytes.Contains(body, []byte("licence key")) {
			t.Fatalf("acknowledged order = %d %s", resp.StatusCode, body)
		}
		a.audited(func(r auditlog.Record) bool {
			return r.Caller == "purchasing" && r.Script == "payment/capture" && r.Decision == "allow" && r.Status == 200
		})
	})

	t.Run("statement for the purchasing manager, signed, VAT by rate", func(t *testing.T) {
		if resp, _ := puDo(t, a, bobC, "GET", "/cgi-bin/purchasing/statement", "", nil, nil); resp.StatusCode != 403 {
			t.Fatalf("buyer's statement = %d", resp.StatusCode)
		}
		resp, der := puDo(t, a, miaC, "GET", "/cgi-bin/purchasing/statement", "", nil, nil)
		s, err := cms.Verify(der, cms.VerifyOptions{Registered: []*x509.Certificate{merchant}})
		if resp.StatusCode != 200 || err != nil {
			t.Fatalf("statement = %d: %v", resp.StatusCode, err)
		}
		if out, err := puOpenssl(t, der, merchant); err != nil || !bytes.Contains(out, []byte("e2sgate.statement.v1")) {
			t.Fatalf("openssl cms -verify statement: %v\n%s", err, out)
		}
		var st api.Statement
		json.Unmarshal(s.Content, &st)
		// Order 1: 2×159.00 + 49.00; order 2: 159.00. 19%: 477.00 → 60.42 + 30.21; 7%: 49.00 → 3.43.
		want := []api.VATGroup{{Percent: 7, NetCents: 4900, VATCents: 343}, {Percent: 19, NetCents: 47700, VATCents: 6042 + 3021}}
		gross := int64(gross1 + 15900 + 3021)
		if st.Org != "acme" || len(st.Orders) != 2 || len(st.VAT) != 2 || st.VAT[0] != want[0] || st.VAT[1] != want[1] ||
			st.NetCents != 52600 || st.GrossCents != gross || st.AuthorizedCents != gross || st.CapturedCents != gross {
			t.Fatalf("statement %+v", st)
		}
	})

	// Bad credentials through the real web front and gate: each is 401 with
	// a reason id (X-E2s-Reason, and in the body beside the error code) and a
	// next step, audited with purchasing's reason id, and the change it
	// carried is not made.
	t.Run("bad credentials: 401, reason id, next step, audited, nothing changed", func(t *testing.T) {
		const path = "/cgi-bin/purchasing/buyers"
		bobNow := map[string]any{"fingerprint": bob.fp(), "name": "Bob", "limit_cents": 200_000, "categories": []string{"software", "documents"}}
		change, _ := json.Marshal(map[string]any{"fingerprint": bob.fp(), "name": "Bob", "limit_cents": 1, "categories": []string{"documents"}})
		// A nonce the merchant has answered: a no-op change signed with it.
		used := hex.EncodeToString(puNonce())
		noop, _ := json.Marshal(bobNow)
		if resp, b := puDo(t, a, anon, "POST", path, "application/json", noop, puSignWith(mia, "POST", path, "", noop, time.Now(), used)); resp.StatusCode != 200 {
			t.Fatalf("signed no-op change = %d %s", resp.StatusCode, b)
		}
		malformed := puSign(mia, "POST", path, "", change)
		malformed[api.HeaderSignature] = "not a signature"
		for _, tt := range []struct {
			name, code, reason, next string
			hdr                      map[string]string
		}{
			{"malformed signature", "bad_signature", "purchasing.bad_signature", "sign it again", malformed},
			{"unknown key", "unknown_buyer", "purchasing.unknown_key", "ask your purchasing manager to register", puSign(eve, "POST", path, "", change)},
			{"stale time", "stale_request", "purchasing.stale_request", "set your clock", puSignWith(mia, "POST", path, "", change, time.Now().Add(-time.Hour), hex.EncodeToString(puNonce()))},
			{"reused nonce", "replayed", "purchasing.replayed", "sign it again with a new nonce", puSignWith(mia, "POST", path, "", change, time.Now(), used)},
		} {
			since := time.Now()
			resp, b := puDo(t, a, anon, "POST", path, "application/json", change, tt.hdr)
			var e api.Error
			json.Unmarshal(b, &e)
			if resp.StatusCode != 401 || e.Error != tt.code || e.Reason != tt.reason || resp.Header.Get("X-E2s-Reason") != tt.reason || !strings.Contains(e.Message, tt.next) {
				t.Errorf("%s = %d %s %s, want 401 %s %s and %q", tt.name, resp.StatusCode, resp.Header.Get("X-E2s-Reason"), b, tt.code, tt.reason, tt.next)
			}
			rec := a.audited(func(r auditlog.Record) bool {
				return r.Caller == "outside" && r.Script == "purchasing/buyers" && r.Status == 401 && !r.Time.Before(since.Add(-time.Second)) && r.TargetReason == tt.reason
			})
			if rec.User != "" {
				t.Errorf("%s: recorded for %q, whom nothing proved", tt.name, rec.User)
			}
		}
		// Nothing changed: Bob's limit is as it was.
		resp, b := puDo(t, a, anon, "GET", path, "", nil, puSign(mia, "GET", path, "", nil))
		var org struct {
			Buyers []api.MemberView `json:"buyers"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(b, &org) != nil {
			t.Fatalf("buyers = %d %s", resp.StatusCode, b)
		}
		found := false
		for _, m := range org.Buyers {
			if m.Fingerprint == bob.fp() {
				found = true
				if m.LimitCents != 200_000 || len(m.Categories) != 2 {
					t.Fatalf("a refused change was made: %+v", m)
				}
			}
		}
		if !found {
			t.Fatalf("Bob is not among the buyers: %s", b)
		}
	})

	// The attack of issue 16: a compromised outside calls the gate itself
	// (its own gate socket, its uid) and puts the manager's certificate —
	// public — into SSL_CLIENT_CERT, with a user to match, but has no key
	// to sign with. purchasing gives nothing away; the gate audits the 401.
	t.Run("forged identity meta from outside: 401, nothing read, audited", func(t *testing.T) {
		sock := filepath.Join(a.runDir(), "gate", "outside", "gate.sock")
		for i, tt := range []struct{ script, pathInfo string }{
			{"purchasing/private", ""},
			{"purchasing/statement", ""},
			{"purchasing/buyers", ""},
			{"purchasing/delivery", "/" + strings.Repeat("0", 32)},
		} {
			reqID := fmt.Sprintf("forged-identity-%d", i)
			call, _ := protojson.Marshal(&callpb.Call{ReqId: reqID, Script: tt.script, Method: "GET", PathInfo: tt.pathInfo,
				User: "cert:" + mia.fp()[:16], Meta: map[string]string{
					"REQUEST_METHOD": "GET", "HTTPS": "on", "SSL_CLIENT_CERT": mia.pem(), "SSL_CLIENT_FINGERPRINT": mia.fp(),
					"SSL_CLIENT_S_DN": mia.cert.Subject.String(), "SSL_CLIENT_VERIFY": "SUCCESS"}})
			out := runChild(t, uidOutside, call, "callas", sock)
			if out.Err != "" {
				t.Fatalf("%s: %s", tt.script, out.Err)
			}
			if out.Status != 401 || out.Headers["X-E2s-Reason"] != "purchasing.signature_required" || bytes.Contains(out.Body, []byte("acme")) || bytes.Contains(out.Body, []byte("ACME")) {
				t.Errorf("%s with the manager's certificate and no proof = %d %v %s", tt.script, out.Status, out.Headers, out.Body)
			}
			rec := a.audited(func(r auditlog.Record) bool { return r.CallerReqID == reqID })
			if rec.Caller != "outside" || rec.Status != 401 || rec.Script != tt.script || rec.TargetReason != "purchasing.signature_required" {
				t.Errorf("audit record of the forged call: %+v", rec)
			}
			// Nobody was proven: the record's user is empty, outside's
			// forgery is kept as what it is, a claim.
			if rec.User != "" || rec.ClaimedUser != "cert:"+mia.fp()[:16] {
				t.Errorf("forged call recorded for user %q (claimed %q)", rec.User, rec.ClaimedUser)
			}
			if i > 0 {
				continue
			}
			code, explained := a.ctl(uidAda, "explain", rec.ReqID)
			if code != 0 || !strings.Contains(explained, `"claimed_user": "cert:`+mia.fp()[:16]+`"`) || strings.Contains(explained, `"user":`) ||
				!strings.Contains(explained, `"target_reason": "purchasing.signature_required"`) ||
				!strings.Contains(explained, `"target_reason_text": "purchasing refused a call that needs a person`) {
				t.Errorf("e2sctl explain %s: exit %d\n%s", rec.ReqID, code, explained)
			}
			t.Logf("e2sctl explain %s:\n%s", rec.ReqID, explained)
		}
	})

	t.Run("manager lowers a limit: enforced at acceptance and by payment", func(t *testing.T) {
		_, acc, _ := offer(t, `{"items":[{"sku":"LIC-STD","qty":1}]}`)
		body, _ := json.Marshal(map[string]any{"fingerprint": bob.fp(), "name": "Bob", "limit_cents": 1000, "categories": []string{"software"}})
		if resp, b := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/buyers", "application/json", body, nil); resp.StatusCode != 403 {
			t.Fatalf("buyer sets limits = %d %s", resp.StatusCode, b)
		}
		if resp, b := puDo(t, a, puTLSClient(a, mia), "POST", "/cgi-bin/purchasing/buyers", "application/json", body, nil); resp.StatusCode != 401 || puErr(b) != "unauthenticated" {
			t.Fatalf("manager's change on her TLS certificate alone = %d %s", resp.StatusCode, b)
		}
		resp, b := puManagerChange(t, a, mia, map[string]any{"fingerprint": bob.fp(), "name": "Bob", "limit_cents": 1000, "categories": []string{"software"}})
		if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"limits_synced":true`)) {
			t.Fatalf("manager sets limits = %d %s", resp.StatusCode, b)
		}
		if resp, b := puDo(t, a, bobC, "POST", "/cgi-bin/purchasing/accept", "application/json", puAccept(acc, puPAN), nil); resp.StatusCode != 402 || puErr(b) != "over_limit" {
			t.Fatalf("accept over the new limit = %d %s", resp.StatusCode, b)
		}
	})

	t.Run("revoked buyer certificate refused", func(t *testing.T) {
		// The offer is issued and signed while Bob is still registered.
		if resp, b := puManagerChange(t, a, mia, map[string]any{"fingerprint": bob.fp(), "name": "Bob", "limit_cents": 200_000, "categories": []string{"software", "documents"}}); resp.StatusCode != 200 {
			t.Fatalf("restore limits = %d %s", resp.StatusCode, b)
		}
		_, acc, _ := offer(t, `{"items":[{"sku":"DOC-SPEC","qty":1}]}`)
		body, _ := json.Marshal(map[string]any{"fingerprint": bob.fp(), "name": "Bob", "revoked": true})
		signed := puSign(mia, "POST", "/cgi-bin/purchasing/buyers", "", body) // the manager's signed change (B2B)
		if resp, b := puDo(t, a, anon, "POST", "/cgi-bin/purchasing/buyers", "application/json", body, signed); resp.StatusCode != 200 {
			t.Fatalf("revoke = %d %s", resp.StatusCode, b)
		}
		if resp, b := puDo(t, a, anon, "POST", "/cgi-bin/purchasing/buyers", "application/json", body, signed); resp.StatusCode != 401 || puErr(b) != "replayed" {
			t.Fatalf("replayed signed change = %d %s", resp.StatusCode, b)
		}
		for _, tt := range []struct {
			method, path string
			body         []byte
		}{
			{"GET", "/cgi-bin/purchasing/private", nil},
			{"POST", "/cgi-bin/purchasing/offer", []byte(basketJSON)},
			{"POST", "/cgi-bin/purchasing/accept", puAccept(acc, puPAN)},
		} {
			resp, b := puDo(t, a, bobC, tt.method, tt.path, "application/json", tt.body, nil)
			if resp.StatusCode != 403 || puErr(b) != "revoked" {
				t.Errorf("%s %s by a revoked buyer = %d %s", tt.method, tt.path, resp.StatusCode, b)
			}
		}
	})
}

func puContent(t *testing.T, der []byte) []byte {
	t.Helper()
	s, err := cms.Verify(der, cms.VerifyOptions{SkipTrust: true})
	if err != nil {
		t.Fatal(err)
	}
	return s.Content
}

// puConfirmationsDone waits until inside has moved the back office's
// confirmations of ids from confirmations/ to done/, then checks that each
// was sent to purchasing exactly once, also a few poll intervals later.
func puConfirmationsDone(t *testing.T, a *appliance, ids ...string) {
	t.Helper()
	spool := filepath.Join(a.dataDir(), "inside", "spool")
	for _, id := range ids {
		var err error
		for i := 0; i < 100; i++ {
			if _, err = os.Stat(filepath.Join(spool, "done", id+".json")); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("confirmation of %s never reached done/ (inside log:\n%s)", id, a.logs)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(spool, "confirmations")); len(left) != 0 {
		t.Fatalf("confirmations left in the spool: %v", left)
	}
	time.Sleep(2 * time.Second) // four of inside's poll intervals
	recs, err := auditlog.Read(a.auditLog())
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, r := range recs {
		if r.Caller == "inside" && r.Script == "purchasing/delivered" {
			if r.Decision != "allow" || r.Status != 200 {
				t.Errorf("delivered call %s %d %s", r.Decision, r.Status, r.Reason)
			}
			sent++
		}
	}
	if sent != len(ids) {
		t.Fatalf("purchasing/delivered audited %d times for %d confirmations", sent, len(ids))
	}
}
