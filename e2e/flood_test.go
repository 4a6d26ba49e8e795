package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

// floodReport is what e2e/testdata/gateflood prints.
type floodReport struct {
	Calls       int64          `json:"calls"`
	Answers     map[string]int `json:"answers"`
	Oversized   map[string]int `json:"oversized"`
	ConnsOpened int            `json:"conns_opened"`
	ConnsHeld   int            `json:"conns_held"`
	ConnsClosed int            `json:"conns_closed"`
	DialFailed  int            `json:"dial_failed"`
	DialError   string         `json:"dial_error"`
}

// purchaseRun is one full purchase as the flood test times it.
type purchaseRun struct {
	contract, delivery time.Duration // offer → contract; confirmation → captured
	tooMany            int           // 429 answers the buyer got (and retried)
}

// floodClients: connections the rig's flood shares; its first call on each
// is one more denied call of the rig's.
const floodClients = 4

// TestGateFloodPurchaseCompletes is item 3 of issue 16 through the real
// processes: a rig with outside's uid on outside's gate socket (what a
// compromised web front holds) sends oversized calls, opens and holds
// thousands of connections, and floods the gate with denied calls; all the
// while a full purchase — offer, acceptance, contract through outside,
// then the back office's confirmation through inside to purchasing and
// capture by payment — completes. Outside's refusals are audited in
// aggregate, no other compartment's call is refused over a limit, and the
// audit log verifies. Purchase latency with and without the flood is
// logged (and written to bin/artifacts/flood.md), never asserted.
func TestGateFloodPurchaseCompletes(t *testing.T) {
	acqConfig, startAcquirer := puAcquirer(t)
	// Limits below the defaults (128 in flight, 500/s, burst 1000), so that
	// the flood reaches them however slow the machine is: a rig on a
	// loaded 2-core machine managed ~460 calls/s, under the default rate.
	const limits = "gate_limits:\n  concurrent: 32\n  per_second: 100\n  burst: 200\n  report_interval: 10s\n"
	const interval = 10 * time.Second
	a := startAppliance(t, acqConfig+limits+"policy_dir: "+policyDir(t, nil)+"\n")
	startAcquirer(a)
	mia, bob := puNewIdentity(t, "Mia"), puNewIdentity(t, "Bob")
	puEnrol(t, a, mia, bob)
	bobC := puClient(a, bob)
	merchant := a.merchantCert(t)

	quiet := floodPurchase(t, a, bobC, bob, merchant)

	// The flood, from outside's position.
	buildGateFlood(t)
	rig := exec.Command(filepath.Join(binDir, "gateflood"), "-socket", filepath.Join(a.runDir(), "gate", "outside", "gate.sock"),
		"-conns", "3000", "-workers", "48", "-clients", fmt.Sprint(floodClients), "-oversize", "3")
	rig.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uidOutside, Gid: uidOutside, NoSetGroups: true}}
	stdin, err := rig.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, stderr bytes.Buffer
	rig.Stdout, rig.Stderr = &out, &stderr
	floodStart := time.Now()
	if err := rig.Start(); err != nil {
		t.Fatal(err)
	}
	rigDone := make(chan error, 1)
	go func() { rigDone <- rig.Wait() }()
	t.Cleanup(func() {
		if rig.ProcessState == nil {
			rig.Process.Kill() // the rig this test started, by its pid
			<-rigDone
		}
	})
	// Let the flood reach its stride: the rig has held its connections and
	// the gate is refusing its calls (an aggregated record is due).
	time.Sleep(3 * time.Second)
	flooded := floodPurchase(t, a, bobC, bob, merchant)
	stdin.Close()
	if err := <-rigDone; err != nil {
		t.Fatalf("flood rig: %v\n%s", err, stderr.String())
	}
	floodFor := time.Since(floodStart)
	var rep floodReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("flood rig's report %q: %v\n%s", out.String(), err, stderr.String())
	}

	// The appliance survived, serves, and its log verifies while running.
	if resp, _ := a.do("GET", "/cgi-bin/purchasing/catalogue", "", nil); resp.StatusCode != 200 {
		t.Fatalf("catalogue after the flood = %d", resp.StatusCode)
	}
	if code, out := a.ctl(uidAda, "audit", "verify"); code != 0 {
		t.Fatalf("e2sctl audit verify after the flood: exit %d\n%s", code, out)
	}
	// Stopped, the gate writes the refusals it has counted but not yet
	// recorded; then every refusal is in the log, and it still verifies.
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	span := time.Since(floodStart) // from the first refusal to the last record
	recs, err := auditlog.Read(a.auditLog())
	if err != nil {
		t.Fatal(err)
	}
	code, verified := a.ctl(0, "audit", "verify", "-log", a.auditLog(), "-pubkey", filepath.Join(a.dataDir(), "audit", "audit.pub"))
	if code != 0 {
		t.Fatalf("offline audit verify after the flood: exit %d\n%s", code, verified)
	}

	// What the rig got: every call refused, none forwarded.
	refused := map[string]int{}
	for k, n := range rep.Answers {
		refused[k] += n
		switch k {
		case "403 pol.caller_clearance", "404 reg.unknown_script", "429 gate.rate_limited", "429 gate.too_many_calls":
		default:
			t.Errorf("the rig's calls were answered %q %d times", k, n)
		}
	}
	if rep.Oversized["transport ResourceExhausted"] != 3 {
		t.Errorf("oversized calls: %v, want 3 refused by the transport", rep.Oversized)
	}
	if rep.ConnsOpened < 1000 || rep.ConnsHeld < 1 {
		t.Errorf("held connections: %d opened, %d still open at the end (dial: %d failed, %s)", rep.ConnsOpened, rep.ConnsHeld, rep.DialFailed, rep.DialError)
	}
	tooMany := refused["429 gate.rate_limited"] + refused["429 gate.too_many_calls"]
	reasons := 0 // kinds of refusal over a limit, each recorded on its own
	for _, k := range []string{"429 gate.rate_limited", "429 gate.too_many_calls"} {
		if refused[k] > 0 {
			reasons++
		}
	}
	if tooMany == 0 {
		t.Errorf("the flood never reached outside's limits: %v", rep.Answers)
	}

	// The audit log: each decided call one record, the refusals over the
	// limits in aggregate (Count), the oversized calls each one record.
	var decided, aggregated, aggregatedCalls, oversized, outsideRecs int
	var others []auditlog.Record
	for _, r := range recs {
		if r.Time.Before(floodStart.Add(-time.Second)) {
			continue
		}
		switch {
		case r.Caller == "outside" && r.Reason == "gate.message_too_large":
			oversized++
		case r.Caller == "outside" && (r.Reason == "gate.rate_limited" || r.Reason == "gate.too_many_calls"):
			aggregated++
			aggregatedCalls += max(r.Count, 1)
		case r.Caller == "outside" && (r.Script == "keyhandler/sign-offer" && r.Reason == "pol.caller_clearance" || r.Script == "purchasing/flood" && r.Reason == "reg.unknown_script"):
			decided++
		case r.Caller != "outside" && r.Event == "" && r.Status == 429:
			others = append(others, r)
		}
		if r.Caller == "outside" {
			outsideRecs++
		}
	}
	if len(others) > 0 {
		t.Errorf("calls between other compartments refused over a limit during the flood: %+v", others)
	}
	if oversized != 3 {
		t.Errorf("%d records of oversized calls, want 3", oversized)
	}
	if want := refused["403 pol.caller_clearance"] + refused["404 reg.unknown_script"] + floodClients; decided != want {
		t.Errorf("%d records of the rig's denied calls, want one per call the gate decided (%d)", decided, want)
	}
	if want := tooMany + flooded.tooMany; aggregatedCalls != want {
		t.Errorf("aggregated records count %d refused calls, want %d (the rig's %d and the buyer's %d)", aggregatedCalls, want, tooMany, flooded.tooMany)
	}
	// At most one aggregated record per caller, reason and report
	// interval, and one more per reason when the gate agent stops.
	if bound := max(reasons, 1) * (int(span/interval) + 2); aggregated > bound {
		t.Errorf("%d aggregated records for %d refusals in %v, want at most %d", aggregated, aggregatedCalls, span.Round(time.Second), bound)
	}

	// The numbers, for the operator and the note.
	keys := make([]string, 0, len(refused))
	for k := range refused {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var md strings.Builder
	fmt.Fprintf(&md, "# Gate flood from outside's position (TestGateFloodPurchaseCompletes)\n\n")
	fmt.Fprintf(&md, "Limits: %s\n\n", strings.ReplaceAll(strings.TrimSpace(strings.TrimPrefix(limits, "gate_limits:")), "\n  ", ", "))
	fmt.Fprintf(&md, "Flood for %v: %d denied calls from 48 workers over %d connections; %d connections opened and held (%d still open at the end, %d closed by the gate), %d dials failed; 3 oversized calls.\n\n",
		floodFor.Round(time.Millisecond), rep.Calls+floodClients, floodClients, rep.ConnsOpened, rep.ConnsHeld, rep.ConnsClosed, rep.DialFailed)
	fmt.Fprintf(&md, "| answer to the rig | calls |\n| --- | --- |\n")
	for _, k := range keys {
		fmt.Fprintf(&md, "| %s | %d |\n", k, refused[k])
	}
	for k, n := range rep.Oversized {
		fmt.Fprintf(&md, "| oversized: %s | %d |\n", k, n)
	}
	fmt.Fprintf(&md, "\nAudit: %d records from outside during the flood: %d decided denials, %d aggregated records standing for %d refusals over the limits, %d oversized; %d records in all; the log verifies.\n\n",
		outsideRecs, decided, aggregated, aggregatedCalls, oversized, len(recs))
	fmt.Fprintf(&md, "| purchase | offer → contract | confirmation → captured | 429s retried |\n| --- | --- | --- | --- |\n")
	fmt.Fprintf(&md, "| without the flood | %v | %v | %d |\n", quiet.contract.Round(time.Millisecond), quiet.delivery.Round(time.Millisecond), quiet.tooMany)
	fmt.Fprintf(&md, "| during the flood | %v | %v | %d |\n", flooded.contract.Round(time.Millisecond), flooded.delivery.Round(time.Millisecond), flooded.tooMany)
	fmt.Fprintf(&md, "| ratio | %.2f | %.2f | |\n", flooded.contract.Seconds()/quiet.contract.Seconds(), flooded.delivery.Seconds()/quiet.delivery.Seconds())
	t.Log("\n" + md.String())
	if err := os.WriteFile(filepath.Join(artifactDir(t), "flood.md"), []byte(md.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// floodPurchase is one full purchase by bob, timed by phase: offer,
// acceptance and contract through outside (a 429 is retried, as a client
// does, and counted), then the back office's confirmation through inside
// until payment captured.
func floodPurchase(t *testing.T, a *appliance, bobC *http.Client, bob *puIdentity, merchant *x509.Certificate) purchaseRun {
	t.Helper()
	var run purchaseRun
	do := func(method, path, ctype string, body []byte) (*http.Response, []byte) {
		for {
			resp, b := puDo(t, a, bobC, method, path, ctype, body, nil)
			if resp.StatusCode != http.StatusTooManyRequests {
				return resp, b
			}
			run.tooMany++
			time.Sleep(20 * time.Millisecond)
		}
	}
	start := time.Now()
	resp, der := do("POST", "/cgi-bin/purchasing/offer", "application/json", []byte(`{"items":[{"sku":"DOC-SPEC","qty":1}]}`))
	if resp.StatusCode != 200 {
		t.Fatalf("offer = %d %s", resp.StatusCode, der)
	}
	s, err := cms.Verify(der, cms.VerifyOptions{Registered: []*x509.Certificate{merchant}})
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	var doc api.Offer
	if err := json.Unmarshal(s.Content, &doc); err != nil {
		t.Fatal(err)
	}
	acc, err := cms.AddSigner(der, nil, bob.key, []*x509.Certificate{bob.cert}, cms.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	resp, contract := do("POST", "/cgi-bin/purchasing/accept", "application/json", puAccept(acc, puPAN))
	if resp.StatusCode != 201 {
		t.Fatalf("accept = %d %s", resp.StatusCode, contract)
	}
	if c, err := cms.Verify(contract, cms.VerifyOptions{Registered: []*x509.Certificate{merchant, bob.cert}}); err != nil || len(c.Signers) != 3 {
		t.Fatalf("contract: %v", err)
	}
	run.contract = time.Since(start)

	// The back office confirms through its spool; inside tells purchasing.
	start = time.Now()
	conf := filepath.Join(a.dataDir(), "inside", "spool", "confirmations")
	b, _ := json.Marshal(map[string]string{"order_id": doc.OfferID, "delivered_at": time.Now().UTC().Format(time.RFC3339), "reference": "BO-" + doc.OfferID[:6]})
	if err := os.WriteFile(filepath.Join(conf, ".tmp-"+doc.OfferID), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(conf, ".tmp-"+doc.OfferID), filepath.Join(conf, doc.OfferID+".json")); err != nil {
		t.Fatal(err)
	}
	var o api.Order
	for range 1200 {
		o = api.Order{}
		if _, body := do("GET", "/cgi-bin/purchasing/order/"+doc.OfferID, "", nil); json.Unmarshal(body, &o) == nil && o.Capture != nil && o.Capture.Captured {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if o.Status != api.StatusDelivered || o.Capture == nil || !o.Capture.Captured {
		t.Fatalf("order %s not delivered and captured after the confirmation: %+v", doc.OfferID, o)
	}
	run.delivery = time.Since(start)
	return run
}

var (
	gateFloodOnce sync.Once
	gateFloodErr  error
)

// buildGateFlood builds the flood rig into binDir (once).
func buildGateFlood(t *testing.T) {
	t.Helper()
	gateFloodOnce.Do(func() {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "gateflood"), "./testdata/gateflood").CombinedOutput(); err != nil {
			gateFloodErr = fmt.Errorf("build gateflood: %v %s", err, out)
		}
	})
	if gateFloodErr != nil {
		t.Fatal(gateFloodErr)
	}
}
