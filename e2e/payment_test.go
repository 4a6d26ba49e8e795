package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/filters/socks"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/sim/acquirer"
	"google.golang.org/protobuf/encoding/protojson"
)

// The payment half of issue 5 through the real appliance (runc sandboxes,
// every kernel layer): a stand-in for purchasing — this test binary re-run
// under purchasing's uid on purchasing's gate socket, so the gate agent
// names it "purchasing" — calls payment/limits, payment/authorize,
// payment/capture and inside/order; payment reaches the acquirer simulator
// only through inside's SOCKS filter, TLS end to end with the pinned
// certificate. The acquirer runs in a network namespace of its own on the
// internal network (10.77.0.10), the back office beside the spool.

const (
	acqAddr   = "10.77.0.10"
	acqPort   = 8583
	visa      = "4111111111111111"
	smallCard = "5555555555554444" // 500.00 available at the simulator
	unknown   = "4242424242424242" // Luhn-valid, unknown to the issuer
	timeoutAm = 99999              // the simulator never answers this amount
)

// Compartment uids (config defaults).
const (
	uidOutside    = 64001
	uidPurchasing = 64002
	uidPayment    = 64003
	uidKeyhandler = 64004
	uidInside     = 64005
)

const childEnv = "E2S_E2E_CHILD"

// A child run of this binary (see runChild) does one thing and exits
// before any test runs.
func init() {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(childMain(mode, os.Args[1:]))
	}
}

type childOut struct {
	Status  int32             `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    []byte            `json:"body"`
	Reply   int               `json:"reply"`
	Err     string            `json:"err"`
}

func childMain(mode string, args []string) int {
	var out childOut
	switch mode {
	case "gatecall": // args: socket script; body on stdin
		body, _ := io.ReadAll(os.Stdin)
		g, err := protocol.DialGate(args[0])
		if err != nil {
			out.Err = err.Error()
			break
		}
		r, err := g.Call(context.Background(), &callpb.Call{Script: args[1], Method: "POST", Body: body,
			Meta: map[string]string{"CONTENT_TYPE": "application/json"}})
		if err != nil {
			out.Err = err.Error()
			break
		}
		out.Status, out.Headers, out.Body = r.GetStatus(), r.GetHeaders(), r.GetBody()
	case "callas": // args: socket; the whole call (protojson) on stdin
		in, _ := io.ReadAll(os.Stdin)
		var c callpb.Call
		if err := protojson.Unmarshal(in, &c); err != nil {
			out.Err = err.Error()
			break
		}
		g, err := protocol.DialGate(args[0])
		if err != nil {
			out.Err = err.Error()
			break
		}
		r, err := g.Call(context.Background(), &c)
		if err != nil {
			out.Err = err.Error()
			break
		}
		out.Status, out.Headers, out.Body = r.GetStatus(), r.GetHeaders(), r.GetBody()
	case "socks": // args: socket host port
		c, err := net.Dial("unix", args[0])
		if err != nil {
			out.Err = err.Error()
			break
		}
		port, _ := strconv.Atoi(args[2])
		rep, err := socks.RawConnect(c, args[1], uint16(port))
		out.Reply = int(rep)
		if err != nil {
			out.Err = err.Error()
		}
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

var (
	childOnce sync.Once
	childBin  string
	toolsOnce sync.Once
	toolsDir  string
)

// runChild runs this test binary as uid in mode.
func runChild(t *testing.T, uid int, stdin []byte, mode string, args ...string) childOut {
	t.Helper()
	childOnce.Do(func() { // a copy every uid may execute
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		childBin = filepath.Join(binDir, "e2e-child")
		if err := os.WriteFile(childBin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	})
	cmd := exec.Command(childBin, args...)
	cmd.Env = []string{childEnv + "=" + mode}
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	var out childOut
	if err != nil || json.Unmarshal(b, &out) != nil {
		t.Fatalf("child %s as uid %d: %v\n%s\n%s", mode, uid, err, b, stderr.String())
	}
	return out
}

// tools builds the simulators.
func tools(t *testing.T) string {
	toolsOnce.Do(func() {
		toolsDir = filepath.Join(binDir, "tools")
		build := exec.Command("go", "build", "-o", toolsDir+"/", "../cmd/acquirer", "../cmd/backoffice")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build simulators: %v\n%s", err, out)
		}
	})
	return toolsDir
}

// startAcquirer runs the acquirer simulator in a network namespace of its
// own with 10.77.0.10 on the appliance's internal network (its -netns mode:
// a veth onto the internal namespace's bridge), as an operator would.
func startAcquirer(t *testing.T, a *appliance, dir string) (ledger string) {
	t.Helper()
	ledger = filepath.Join(dir, "ledger.jsonl")
	cmd := exec.Command(filepath.Join(tools(t), "acquirer"), "-netns", fmt.Sprintf("acq%d", os.Getpid()),
		"-internal-netns", a.instance+"-internal-net",
		"-listen", fmt.Sprintf("%s:%d", acqAddr, acqPort), "-cert", filepath.Join(dir, "acquirer.pem"),
		"-key", filepath.Join(dir, "acquirer.key"), "-ledger", ledger, "-timeout-amount", strconv.Itoa(timeoutAm))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }) // it removes its namespace
	var seen []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "listening") {
			go io.Copy(io.Discard, stderr)
			return ledger
		}
		seen = append(seen, sc.Text())
	}
	t.Fatalf("acquirer simulator did not start:\n%s", strings.Join(seen, "\n"))
	return ""
}

type payAppliance struct {
	*appliance
	ledger string
	mu     sync.Mutex
	seen   [][]byte // every answer, to prove no PAN is in any
}

func (p *payAppliance) call(t *testing.T, script string, v any) (int32, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(v)
	out := runChild(t, uidPurchasing, body, "gatecall", filepath.Join(p.runDir(), "gate", "purchasing", "gate.sock"), script)
	if out.Err != "" {
		t.Fatalf("%s: %s", script, out.Err)
	}
	p.mu.Lock()
	p.seen = append(p.seen, out.Body)
	p.mu.Unlock()
	var m map[string]any
	json.Unmarshal(out.Body, &m)
	return out.Status, m
}

func (p *payAppliance) ledgerEntries(t *testing.T, mti, rrnPrefix string) int {
	t.Helper()
	es, err := acquirer.ReadLedger(p.ledger)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if (mti == "" || e.MTI == mti) && strings.HasPrefix(e.RRN, rrnPrefix) {
			n++
		}
	}
	return n
}

// waitAudited waits for an audit record matching pred: events from below
// the gate (the SOCKS filter's) reach the log shortly after they happen.
func (p *payAppliance) waitAudited(t *testing.T, what string, pred func(auditlog.Record) bool) auditlog.Record {
	t.Helper()
	for i := 0; i < 300; i++ {
		recs, err := auditlog.Read(p.auditLog())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if pred(r) {
				return r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no audit record: %s", what)
	return auditlog.Record{}
}

func authBody(order string, amount int64, category, pan string) map[string]any {
	return map[string]any{"order_id": order, "org": "acme", "buyer": "bob", "amount_cents": amount, "currency": "EUR",
		"category": category, "card": map[string]string{"pan": pan, "expiry": "12/30"}}
}

func TestPayment(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end test runs as root (make test in CI)")
	}
	dir, err := os.MkdirTemp("", "e2sgate-acq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The pinned certificate exists before the appliance starts.
	if _, err := acquirer.LoadOrCreateCert(filepath.Join(dir, "acquirer.pem"), filepath.Join(dir, "acquirer.key"), []net.IP{net.ParseIP(acqAddr)}); err != nil {
		t.Fatal(err)
	}
	a := startAppliance(t, fmt.Sprintf("payment:\n  acquirer: %s:%d\n  acquirer_cert: %s\n  timeout: 3s\n", acqAddr, acqPort, filepath.Join(dir, "acquirer.pem")))
	p := &payAppliance{appliance: a}
	p.ledger = startAcquirer(t, a, dir)

	t.Run("limits", func(t *testing.T) {
		st, m := p.call(t, "payment/limits", map[string]any{"org": "acme", "buyer": "bob", "limit_cents": 1_000_000, "categories": []string{"software", "documents"}})
		if st != 200 || m["limit_cents"] != float64(1_000_000) {
			t.Fatalf("limits = %d %v", st, m)
		}
	})

	var authCode string
	t.Run("authorised through SOCKS to the acquirer", func(t *testing.T) {
		st, m := p.call(t, "payment/authorize", authBody("e2eorder1", 52605, "software", visa))
		if st != 200 || m["approved"] != true || m["response_code"] != "00" || m["card"] != "************1111" {
			t.Fatalf("authorize = %d %v", st, m)
		}
		authCode, _ = m["auth_code"].(string)
		if len(authCode) != 6 || p.ledgerEntries(t, "0100", "e2eorder1") != 1 {
			t.Fatalf("auth code %q; ledger entries %d", authCode, p.ledgerEntries(t, "0100", "e2eorder1"))
		}
		p.waitAudited(t, "purchasing → payment/authorize allowed", func(r auditlog.Record) bool {
			return r.Caller == "purchasing" && r.Script == "payment/authorize" && r.Decision == "allow" && r.Status == 200
		})
		p.waitAudited(t, "SOCKS connection to the acquirer", func(r auditlog.Record) bool {
			return r.Caller == "inside" && r.Script == "inside/socks.connect" && r.Decision == "allow" && r.Reason == "socks.allowed" &&
				r.Detail == fmt.Sprintf("caller=payment dest=%s:%d", acqAddr, acqPort)
		})
		// Retried: the same authorisation, the acquirer not asked again.
		if st, m := p.call(t, "payment/authorize", authBody("e2eorder1", 52605, "software", visa)); st != 200 || m["auth_code"] != authCode {
			t.Fatalf("retry = %d %v", st, m)
		}
		if n := p.ledgerEntries(t, "0100", "e2eorder1"); n != 1 {
			t.Fatalf("retry reached the acquirer: %d authorisations", n)
		}
	})

	t.Run("declined over the card's limit", func(t *testing.T) {
		st, m := p.call(t, "payment/authorize", authBody("e2eorder2", 60000, "software", smallCard))
		if st != 200 || m["approved"] != false || m["response_code"] != "51" {
			t.Fatalf("over limit = %d %v", st, m)
		}
	})

	t.Run("declined unknown card", func(t *testing.T) {
		st, m := p.call(t, "payment/authorize", authBody("e2eorder3", 100, "software", unknown))
		if st != 200 || m["approved"] != false || m["response_code"] != "14" {
			t.Fatalf("unknown card = %d %v", st, m)
		}
	})

	t.Run("acquirer timeout: clear error, nothing charged", func(t *testing.T) {
		st, m := p.call(t, "payment/authorize", authBody("e2eorder4", timeoutAm, "software", visa))
		if st != 504 || m["approved"] != false || m["reason"] != "acquirer_timeout" {
			t.Fatalf("timeout = %d %v", st, m)
		}
		if n := p.ledgerEntries(t, "", "e2eorder4"); n != 0 {
			t.Fatal("the timed-out authorisation was charged")
		}
		if st, m := p.call(t, "payment/capture", map[string]string{"order_id": "e2eorder4"}); st != 409 {
			t.Fatalf("capture of a timed-out payment = %d %v", st, m)
		}
		if p.ledgerEntries(t, "0220", "e2eorder4") != 0 {
			t.Fatal("timed-out payment captured")
		}
	})

	t.Run("category refused before the acquirer is asked", func(t *testing.T) {
		before, _ := acquirer.ReadLedger(p.ledger)
		st, m := p.call(t, "payment/authorize", authBody("e2eorder5", 100, "services", visa))
		if st != 200 || m["approved"] != false || m["reason"] != "category_not_allowed" {
			t.Fatalf("category = %d %v", st, m)
		}
		st, m = p.call(t, "payment/authorize", authBody("e2eorder6", 2_000_000, "software", visa))
		if st != 200 || m["approved"] != false || m["reason"] != "over_spending_limit" {
			t.Fatalf("spending limit = %d %v", st, m)
		}
		if after, _ := acquirer.ReadLedger(p.ledger); len(after) != len(before) {
			t.Fatalf("the acquirer was asked: %d → %d ledger entries", len(before), len(after))
		}
	})

	t.Run("order to the back office; delivery confirmed through the gate; captured once", func(t *testing.T) {
		order := map[string]any{"order_id": "e2eorder1", "org": "acme", "buyer": "bob", "auth_code": authCode, "gross_cents": 52605}
		if st, m := p.call(t, "inside/order", order); st != 201 || m["spooled"] != true {
			t.Fatalf("inside/order = %d %v", st, m)
		}
		spool := filepath.Join(p.dataDir(), "inside", "spool")
		if b, err := os.ReadFile(filepath.Join(spool, "orders", "e2eorder1.json")); err != nil || !bytes.Contains(b, []byte(authCode)) {
			t.Fatalf("spooled order %q: %v", b, err)
		}
		if out, err := exec.Command(filepath.Join(tools(t), "backoffice"), "-spool", spool, "-once").CombinedOutput(); err != nil {
			t.Fatalf("backoffice: %v\n%s", err, out)
		}
		// inside notices the confirmation and tells purchasing, through the gate.
		p.waitAudited(t, "inside → purchasing/delivered", func(r auditlog.Record) bool {
			return r.Caller == "inside" && r.Script == "purchasing/delivered" && r.Decision == "allow"
		})
		// purchasing (the other half of the flow) captures: here its stand-in.
		if st, m := p.call(t, "payment/capture", map[string]string{"order_id": "e2eorder1"}); st != 200 || m["captured"] != true {
			t.Fatalf("capture = %d %v", st, m)
		}
		if st, m := p.call(t, "payment/capture", map[string]string{"order_id": "e2eorder1"}); st != 200 || m["repeated"] != true {
			t.Fatalf("second capture = %d %v", st, m)
		}
		if n := p.ledgerEntries(t, "0220", "e2eorder1"); n != 1 {
			t.Fatalf("%d captures at the acquirer, want exactly 1", n)
		}
	})

	t.Run("kill -9 payment: state survives sealed, retry and capture not doubled", func(t *testing.T) {
		if st, m := p.call(t, "payment/authorize", authBody("e2eorder7", 4900, "documents", visa)); st != 200 || m["approved"] != true {
			t.Fatalf("authorize = %d %v", st, m)
		}
		st, _ := p.status()
		old := st.Compartments["payment"].Pid
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.waitRunning(map[string]int{"payment": old})
		var status int32
		var m map[string]any
		for i := 0; i < 50; i++ { // the gate learns of the new process right after it is up
			if status, m = p.call(t, "payment/authorize", authBody("e2eorder7", 4900, "documents", visa)); status != 503 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if status != 200 || m["reason"] != "already_authorized" {
			t.Fatalf("retry after restart = %d %v", status, m)
		}
		for range 2 {
			if st, m := p.call(t, "payment/capture", map[string]string{"order_id": "e2eorder7"}); st != 200 || m["captured"] != true {
				t.Fatalf("capture after restart = %d %v", st, m)
			}
		}
		if a, c := p.ledgerEntries(t, "0100", "e2eorder7"), p.ledgerEntries(t, "0220", "e2eorder7"); a != 1 || c != 1 {
			t.Fatalf("acquirer saw %d authorisations and %d captures, want 1 and 1", a, c)
		}
	})

	t.Run("only payment can reach the SOCKS filter", func(t *testing.T) {
		sock := filepath.Join(p.runDir(), "socks", "payment", "socks.sock")
		for name, uid := range map[string]int{"outside": uidOutside, "purchasing": uidPurchasing, "keyhandler": uidKeyhandler, "inside": uidInside} {
			out := runChild(t, uid, nil, "socks", sock, acqAddr, strconv.Itoa(acqPort))
			if !strings.Contains(out.Err, "permission denied") {
				t.Errorf("%s (uid %d) reached the SOCKS filter: %+v", name, uid, out)
			}
		}
		st, _ := p.status()
		for _, n := range []string{"outside", "purchasing", "keyhandler"} {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", st.Compartments[n].Pid, sock)); err == nil || !os.IsNotExist(err) {
				t.Errorf("%s sees the SOCKS socket in its sandbox (%d bytes, %v)", n, len(b), err)
			}
		}
	})

	t.Run("SOCKS CONNECT to a non-allowlisted address refused and audited", func(t *testing.T) {
		sock := filepath.Join(p.runDir(), "socks", "payment", "socks.sock")
		for _, target := range [][2]string{{"10.77.0.1", "22"}, {acqAddr, "443"}, {"example.com", "443"}} {
			out := runChild(t, uidPayment, nil, "socks", sock, target[0], target[1])
			if out.Err != "" || out.Reply != 2 {
				t.Fatalf("CONNECT %s:%s = %+v, want reply 2 (not allowed by ruleset)", target[0], target[1], out)
			}
			dest := net.JoinHostPort(target[0], target[1])
			p.waitAudited(t, "refused CONNECT "+dest, func(r auditlog.Record) bool {
				return r.Caller == "inside" && r.Script == "inside/socks.connect" && r.Decision == "deny" &&
					r.Reason == "socks.not_allowlisted" && r.Detail == "caller=payment dest="+dest
			})
		}
	})

	t.Run("outside cannot call payment", func(t *testing.T) {
		body, _ := json.Marshal(authBody("e2eorder9", 100, "software", visa))
		resp, b := p.do("POST", "/cgi-bin/payment/authorize", "application/json", body)
		if resp.StatusCode != 403 || resp.Header.Get("X-E2s-Reason") != "pol.caller_clearance" {
			t.Fatalf("outside → payment/authorize = %d %s %s", resp.StatusCode, resp.Header.Get("X-E2s-Reason"), b)
		}
		p.seen = append(p.seen, b)
	})

	t.Run("no full PAN in any answer nor in the audit log", func(t *testing.T) {
		log, err := os.ReadFile(p.auditLog())
		if err != nil {
			t.Fatal(err)
		}
		for _, pan := range []string{visa, smallCard, unknown} {
			if bytes.Contains(log, []byte(pan)) {
				t.Errorf("audit log holds PAN %s", pan)
			}
			for _, b := range p.seen {
				if bytes.Contains(b, []byte(pan)) {
					t.Errorf("an answer holds PAN %s: %s", pan, b)
				}
			}
		}
		if len(p.seen) < 10 {
			t.Fatalf("only %d answers seen", len(p.seen))
		}
	})
}

// With simulators: true (the default) and no acquirer configured, the
// supervisor runs the acquirer and back-office simulators itself (make run):
// a payment is approved and an order confirmed with nothing started by hand.
func TestPaymentSimulators(t *testing.T) {
	for _, prog := range []string{"acquirer", "backoffice"} { // beside e2sgated, for this test only
		b, err := os.ReadFile(filepath.Join(tools(t), prog))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(binDir, prog)
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(dst) })
	}
	a := startAppliance(t, "")
	p := &payAppliance{appliance: a}
	if st, m := p.call(t, "payment/limits", map[string]any{"org": "acme", "buyer": "bob", "limit_cents": 100_000, "categories": []string{"software"}}); st != 200 {
		t.Fatalf("limits = %d %v", st, m)
	}
	var st int32
	var m map[string]any
	for i := 0; i < 100; i++ { // the simulator starts once inside runs
		if st, m = p.call(t, "payment/authorize", authBody(fmt.Sprintf("simorder%d", i), 4900, "software", visa)); m["reason"] != "acquirer_unreachable" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st != 200 || m["approved"] != true {
		t.Fatalf("authorize with the simulated acquirer = %d %v", st, m)
	}
	if st, m := p.call(t, "inside/order", map[string]any{"order_id": m["order_id"], "org": "acme"}); st != 201 {
		t.Fatalf("inside/order = %d %v", st, m)
	}
	p.waitAudited(t, "the simulated back office's confirmation reaches purchasing", func(r auditlog.Record) bool {
		return r.Caller == "inside" && r.Script == "purchasing/delivered" && r.Decision == "allow"
	})
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(out, []byte(a.instance+"-acquirer")) {
		t.Fatalf("the simulator's namespace outlived the appliance:\n%s", out)
	}
}
