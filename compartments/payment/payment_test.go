package payment

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/payment/iso"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/filters/socks"
	"github.com/e2sgate/e2sgate/internal/sim/acquirer"
)

const (
	visa      = "4111111111111111"
	smallCard = "5555555555554444" // 500.00 available at the simulator
	unknown   = "4242424242424242" // Luhn-valid, unknown to the issuer
)

// chain is payment → SOCKS filter (unix socket) → acquirer simulator (TLS),
// all in this process, as the appliance wires them across compartments.
type chain struct {
	h       *Handler
	dir     string
	ledger  string
	certPEM string
	cfg     Config
	events  chan socks.Event
}

func newChain(t *testing.T) *chain {
	t.Helper()
	dir := t.TempDir()
	c := &chain{dir: dir, ledger: filepath.Join(dir, "ledger.jsonl"), events: make(chan socks.Event, 64)}
	cert, err := acquirer.LoadOrCreateCert(filepath.Join(dir, "acq.pem"), filepath.Join(dir, "acq.key"), []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := os.ReadFile(filepath.Join(dir, "acq.pem"))
	c.certPEM = string(pemBytes)
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	sim := &acquirer.Server{Cards: acquirer.DefaultCards(), TimeoutAmount: 99999, Ledger: c.ledger}
	go sim.Serve(al, cert)
	acqAddr := al.Addr().(*net.TCPAddr).AddrPort()

	sockPath := filepath.Join(dir, "socks.sock")
	sl, err := net.Listen("unix", sockPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sl.Close() })
	go (&socks.Filter{Caller: "payment", Allow: []netip.AddrPort{acqAddr}, Audit: func(e socks.Event) { c.events <- e }}).Serve(sl)

	c.cfg = Config{Acquirer: acqAddr.String(), AcquirerCert: c.certPEM, Socks: sockPath, TimeoutMS: 1500}
	c.h = c.open(t)
	return c
}

func (c *chain) open(t *testing.T) *Handler {
	t.Helper()
	h, err := newHandler(slog.New(slog.DiscardHandler), c.cfg, filepath.Join(c.dir, "payment"), nil, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (c *chain) call(t *testing.T, script string, v any) (int32, map[string]any, []byte) {
	t.Helper()
	body, _ := json.Marshal(v)
	r, err := c.h.Handle(context.Background(), &callpb.Call{Script: script, Method: "POST", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(r.GetBody(), &m)
	return r.GetStatus(), m, r.GetBody()
}

func (c *chain) ledgerCount(t *testing.T, mti string) int {
	t.Helper()
	es, err := acquirer.ReadLedger(c.ledger)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.MTI == mti {
			n++
		}
	}
	return n
}

func auth(order string, amount int64, category, pan string) AuthRequest {
	return AuthRequest{OrderID: order, Org: "acme", Buyer: "bob", AmountCents: amount, Currency: "EUR", Category: category,
		Card: Card{PAN: pan, Expiry: "12/30"}}
}

func TestPaymentThroughSocksAndAcquirer(t *testing.T) {
	c := newChain(t)
	if st, m, _ := c.call(t, "limits", Limits{Org: "acme", Buyer: "bob", LimitCents: 1_000_000, Categories: []string{"software", "documents"}}); st != 200 || m["limit_cents"].(float64) != 1_000_000 {
		t.Fatalf("limits = %d %v", st, m)
	}
	var answers [][]byte
	check := func(name, script string, in any, status int32, want map[string]any) map[string]any {
		t.Helper()
		st, m, raw := c.call(t, script, in)
		answers = append(answers, raw)
		if st != status {
			t.Fatalf("%s: status %d %s, want %d", name, st, raw, status)
		}
		for k, v := range want {
			if m[k] != v {
				t.Fatalf("%s: %s = %v, want %v (%s)", name, k, m[k], v, raw)
			}
		}
		return m
	}

	approved := check("approved", "authorize", auth("order-1", 52605, "software", visa), 200,
		map[string]any{"approved": true, "response_code": "00", "reason": "approved", "card": "************1111"})
	if e := <-c.events; e.Decision != "allow" || e.Caller != "payment" {
		t.Fatalf("socks audit %+v", e)
	}
	again := check("idempotent", "authorize", auth("order-1", 52605, "software", visa), 200,
		map[string]any{"approved": true, "reason": "already_authorized"})
	if again["auth_code"] != approved["auth_code"] || c.ledgerCount(t, "0100") != 1 {
		t.Fatalf("re-authorisation asked the acquirer again: %v vs %v", again, approved)
	}
	check("over card limit", "authorize", auth("order-2", 60000, "software", smallCard), 200,
		map[string]any{"approved": false, "response_code": "51", "reason": "over_card_limit"})
	check("unknown card", "authorize", auth("order-3", 100, "software", unknown), 200,
		map[string]any{"approved": false, "response_code": "14", "reason": "unknown_card"})
	asked := c.ledgerCount(t, "0100")
	check("category", "authorize", auth("order-4", 100, "services", visa), 200,
		map[string]any{"approved": false, "reason": "category_not_allowed"})
	check("spending limit", "authorize", auth("order-5", 1_000_000, "software", visa), 200,
		map[string]any{"approved": false, "reason": "over_spending_limit"})
	check("no limits", "authorize", AuthRequest{OrderID: "order-6", Org: "acme", Buyer: "eve", AmountCents: 100, Currency: "EUR",
		Category: "software", Card: Card{PAN: visa, Expiry: "12/30"}}, 200, map[string]any{"approved": false, "reason": "no_control_parameters"})
	check("bad card number", "authorize", auth("order-7", 100, "software", "4111111111111112"), 200,
		map[string]any{"approved": false, "reason": "invalid_card_number"})
	if c.ledgerCount(t, "0100") != asked {
		t.Fatal("the acquirer was asked although the control parameters refused")
	}
	check("timeout", "authorize", auth("order-8", 99999, "software", visa), 504,
		map[string]any{"approved": false, "reason": "acquirer_timeout"})
	if es, _ := acquirer.ReadLedger(c.ledger); es[len(es)-1].RRN == rrn("order-8") {
		t.Fatal("the timed-out authorisation is in the ledger")
	}
	check("capture after timeout", "capture", map[string]string{"order_id": "order-8"}, 409, map[string]any{"error": "not_authorized"})

	// Capture once, across a restart of the compartment (state sealed at rest).
	c.h = c.open(t)
	check("capture", "capture", map[string]string{"order_id": "order-1"}, 200, map[string]any{"captured": true})
	check("capture again", "capture", map[string]string{"order_id": "order-1"}, 200, map[string]any{"captured": true, "repeated": true})
	if n := c.ledgerCount(t, "0220"); n != 1 {
		t.Fatalf("%d captures at the acquirer, want 1", n)
	}
	check("capture declined order", "capture", map[string]string{"order_id": "order-2"}, 409, nil)
	check("capture unknown order", "capture", map[string]string{"order_id": "nope"}, 404, nil)

	// The PAN is in no answer, and nowhere in the clear at rest.
	for _, a := range answers {
		for _, pan := range []string{visa, smallCard, unknown} {
			if bytes.Contains(a, []byte(pan)) {
				t.Fatalf("answer holds a full PAN: %s", a)
			}
		}
	}
	filepath.Walk(filepath.Join(c.dir, "payment"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(visa)) {
				t.Errorf("%s holds the PAN in the clear", p)
			}
		}
		return nil
	})
}

func TestPinnedCertificate(t *testing.T) {
	c := newChain(t)
	other := newChain(t)
	c.cfg.AcquirerCert = other.certPEM // not the certificate the acquirer presents
	c.h = c.open(t)
	c.call(t, "limits", Limits{Org: "acme", Buyer: "bob", LimitCents: 1000, Categories: []string{"software"}})
	st, m, raw := c.call(t, "authorize", auth("order-1", 100, "software", visa))
	if st != 502 || m["reason"] != "acquirer_unreachable" {
		t.Fatalf("unpinned acquirer accepted: %d %s", st, raw)
	}
	if c.ledgerCount(t, "0100") != 0 {
		t.Fatal("a request reached an acquirer whose certificate is not pinned")
	}
}

func TestLimitsRefused(t *testing.T) {
	c := newChain(t)
	for _, body := range []string{`{}`, `{"org":"a","buyer":"b","limit_cents":-1,"categories":[]}`, `{"org":"a/../b","buyer":"b","limit_cents":1}`, `{"org":"a","buyer":"b","limit_cents":1,"extra":1}`} {
		r, _ := c.h.Handle(context.Background(), &callpb.Call{Script: "limits", Method: "POST", Body: []byte(body)})
		if r.GetStatus() != 400 {
			t.Errorf("limits %s = %d", body, r.GetStatus())
		}
	}
	// Setting limits again keeps what was spent.
	c.call(t, "limits", Limits{Org: "acme", Buyer: "bob", LimitCents: 1000, Categories: []string{"software"}})
	c.call(t, "authorize", auth("o1", 800, "software", visa))
	_, m, _ := c.call(t, "limits", Limits{Org: "acme", Buyer: "bob", LimitCents: 1500, Categories: []string{"software"}})
	if m["spent_cents"].(float64) != 800 {
		t.Fatalf("spent after new limits: %v", m)
	}
	if _, m, _ := c.call(t, "authorize", auth("o2", 800, "software", visa)); m["reason"] != "over_spending_limit" {
		t.Fatalf("cumulative limit not enforced: %v", m)
	}
}

func TestMask(t *testing.T) {
	if got := Mask(visa); got != strings.Repeat("*", 12)+"1111" {
		t.Fatal(got)
	}
	if !Luhn(visa) || Luhn("4111111111111112") {
		t.Fatal("luhn")
	}
}

// Concurrent authorisations of one buyer never spend beyond the limit.
func TestConcurrentLimit(t *testing.T) {
	c := newChain(t)
	c.call(t, "limits", Limits{Org: "acme", Buyer: "bob", LimitCents: 1000, Categories: []string{"software"}})
	var wg sync.WaitGroup
	approved := make(chan bool, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(auth(fmt.Sprintf("c-%d", i), 300, "software", visa))
			r, _ := c.h.Handle(context.Background(), &callpb.Call{Script: "authorize", Method: "POST", Body: body})
			var res AuthResult
			json.Unmarshal(r.GetBody(), &res)
			approved <- res.Approved
		}()
	}
	wg.Wait()
	close(approved)
	n := 0
	for a := range approved {
		if a {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d authorisations of 300 approved under a limit of 1000, want 3", n)
	}
}

// lostAnswer delivers authorisations but loses the acquirer's answer, as a
// network that fails after the request went out.
type lostAnswer struct{ inner Acquirer }

func (l lostAnswer) Exchange(ctx context.Context, req iso.Request) (iso.Response, error) {
	resp, err := l.inner.Exchange(ctx, req)
	if req.MTI == iso.MTIAuthRequest {
		return iso.Response{}, ErrTimeout
	}
	return resp, err
}

// A timed-out authorisation is reversed, so the hold an approval behind the
// lost answer made is released and nothing is charged twice.
func TestTimeoutReversed(t *testing.T) {
	c := newChain(t)
	c.call(t, "limits", Limits{Org: "acme", Buyer: "bob", LimitCents: 1_000_000, Categories: []string{"software"}})
	real := c.h.acq
	c.h.acq = lostAnswer{real}
	if st, m, _ := c.call(t, "authorize", auth("lost-1", 40000, "software", smallCard)); st != 504 || m["reason"] != "acquirer_timeout" {
		t.Fatalf("lost answer = %d %v", st, m)
	}
	for i := 0; c.ledgerCount(t, "0420") == 0; i++ { // the reversal follows the answer
		if i > 300 {
			t.Fatal("no reversal reached the acquirer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.h.acq = real
	// The 40000 held behind the lost answer is free again: another 40000
	// (of the card's 50000) is approved.
	if st, m, raw := c.call(t, "authorize", auth("lost-2", 40000, "software", smallCard)); st != 200 || m["approved"] != true {
		t.Fatalf("after reversal = %d %s", st, raw)
	}
	// And the reversed order itself can be paid afresh.
	if st, m, raw := c.call(t, "authorize", auth("lost-1", 5000, "software", smallCard)); st != 200 || m["approved"] != true {
		t.Fatalf("retry of the reversed order = %d %s", st, raw)
	}
	if st, _, raw := c.call(t, "capture", map[string]string{"order_id": "lost-1"}); st != 200 {
		t.Fatalf("capture = %d %s", st, raw)
	}
}
