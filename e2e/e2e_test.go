package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/daemon/supervisor"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/internal/testutil"
	"github.com/e2sgate/e2sgate/internal/testutil/testctrd"
)

const basket = `{"items":[{"sku":"LIC-STD","qty":2},{"sku":"DOC-SPEC","qty":1}]}`

// The whole slice through real processes: static content, catalogue,
// signed offer, durable order, denials, a killed compartment — confined in
// runc sandboxes (every kernel layer required), and on the unconfined exec
// baseline.
func TestAppliance(t *testing.T) {
	for _, rt := range []struct {
		name   string
		config func(t *testing.T) string
	}{
		{"runc", func(*testing.T) string { return "runtime: runc\nconfinement: required\n" }},
		{"exec", func(*testing.T) string { return "runtime: exec\nconfinement: lowered\n" }},
		{"containerd", func(t *testing.T) string {
			top, err := os.MkdirTemp("", "e2e-ctrd")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(top) })
			return "runtime: containerd\nconfinement: required\ncontainerd_address: " + testctrd.Start(t, top) + "\n"
		}},
	} {
		t.Run(rt.name, func(t *testing.T) { testAppliance(t, rt.name, rt.config(t)) })
	}
}

func testAppliance(t *testing.T, runtime, config string) {
	a := startAppliance(t, config)

	t.Run("status names the pinned runc", func(t *testing.T) {
		st, err := a.status()
		if err != nil {
			t.Fatal(err)
		}
		want := sandbox.RuncVersion
		if runtime == "exec" {
			want = ""
		}
		if st.Runc != want {
			t.Errorf("status.json runc = %q, want %q", st.Runc, want)
		}
	})

	t.Run("static page", func(t *testing.T) {
		resp, body := a.do("GET", "/", "", nil)
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte("e2sgate shop")) {
			t.Fatalf("GET / = %d %q", resp.StatusCode, body)
		}
		if resp.TLS == nil || resp.TLS.Version != 0x0304 {
			t.Fatalf("not TLS 1.3: %+v", resp.TLS)
		}
	})

	t.Run("web front certificate published for buyers", func(t *testing.T) {
		resp, _ := a.do("GET", "/", "", nil)
		served := resp.TLS.PeerCertificates[0].Raw
		var st supervisor.Status
		for i := 0; i < 100 && st.WebCert == ""; i++ {
			st, _ = a.status()
			time.Sleep(50 * time.Millisecond)
		}
		fi, err := os.Stat(st.WebCert)
		if err != nil || fi.Mode().Perm() != 0o644 {
			t.Fatalf("published certificate %q: %v %v", st.WebCert, fi, err)
		}
		b, _ := os.ReadFile(st.WebCert)
		blk, _ := pem.Decode(b)
		sum := sha256.Sum256(served)
		if blk == nil || !bytes.Equal(blk.Bytes, served) || st.WebCertSHA256 != strings.ToUpper(hex.EncodeToString(sum[:])) {
			t.Fatalf("published certificate or fingerprint %s is not the one served", st.WebCertSHA256)
		}
		if !strings.Contains(a.logs.String(), "e2sgate is up") {
			t.Fatal("no 'e2sgate is up' once the appliance serves")
		}
	})

	t.Run("no directory listing", func(t *testing.T) {
		if resp, _ := a.do("GET", "/docs/", "", nil); resp.StatusCode != 404 {
			t.Fatalf("GET /docs/ = %d, want 404", resp.StatusCode)
		}
		if resp, _ := a.do("GET", "/docs/terms.txt", "", nil); resp.StatusCode != 200 {
			t.Fatalf("GET /docs/terms.txt = %d", resp.StatusCode)
		}
		if resp, _ := a.do("PUT", "/index.html", "text/html", []byte("defaced")); resp.StatusCode != 405 {
			t.Fatalf("PUT static = %d, want 405", resp.StatusCode)
		}
	})

	t.Run("catalogue", func(t *testing.T) {
		resp, body := a.do("GET", "/cgi-bin/purchasing/catalogue", "", nil)
		var c api.Catalogue
		if resp.StatusCode != 200 || json.Unmarshal(body, &c) != nil || len(c.Products) == 0 {
			t.Fatalf("catalogue = %d %q", resp.StatusCode, body)
		}
	})

	t.Run("basket", func(t *testing.T) {
		resp, body := a.do("POST", "/cgi-bin/purchasing/basket", "application/json", []byte(basket))
		var p api.Priced
		if resp.StatusCode != 200 || json.Unmarshal(body, &p) != nil {
			t.Fatalf("basket = %d %q", resp.StatusCode, body)
		}
		// 2×199.00 @19% + 49.00 @7% = 398.00 + 75.62 + 49.00 + 3.43
		if p.NetCents != 44700 || p.GrossCents != 44700+7562+343 || len(p.VAT) != 2 {
			t.Fatalf("priced basket %+v", p)
		}
	})

	t.Run("signed offer", func(t *testing.T) {
		resp, der := a.do("POST", "/cgi-bin/purchasing/offer", "application/json", []byte(basket))
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/pkcs7-mime") {
			t.Fatalf("offer = %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), der)
		}
		cresp, certPEM := a.do("GET", "/cgi-bin/keyhandler/certificate", "", nil)
		blk, _ := pem.Decode(certPEM)
		if cresp.StatusCode != 200 || blk == nil {
			t.Fatalf("certificate = %d %q", cresp.StatusCode, certPEM)
		}
		merchant, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := cms.Verify(der, cms.VerifyOptions{Registered: []*x509.Certificate{merchant}})
		if err != nil {
			t.Fatalf("offer does not verify: %v", err)
		}
		var offer api.Offer
		if err := json.Unmarshal(signed.Content, &offer); err != nil || offer.Type != "e2sgate.offer.v1" || offer.GrossCents != 52605 {
			t.Fatalf("offer content %q: %v", signed.Content, err)
		}
		// A tampered offer does not verify.
		bad := bytes.Replace(der, []byte("LIC-STD"), []byte("LIC-PRO"), 1)
		if _, err := cms.Verify(bad, cms.VerifyOptions{Registered: []*x509.Certificate{merchant}}); err == nil {
			t.Fatal("tampered offer verified")
		}
		// openssl accepts it with the merchant certificate.
		openssl := testutil.Requires(t, "openssl")
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "offer.der"), der, 0o600)
		os.WriteFile(filepath.Join(dir, "merchant.pem"), certPEM, 0o600)
		out, err := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", filepath.Join(dir, "offer.der"),
			"-CAfile", filepath.Join(dir, "merchant.pem"), "-purpose", "any").CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(offer.OfferID)) {
			t.Fatalf("openssl cms -verify: %v\n%s", err, out)
		}
		// The sign call was purchasing → keyhandler, through the gate, audited.
		a.audited(func(r auditlog.Record) bool {
			return r.Caller == "purchasing" && r.Script == "keyhandler/sign-offer" && r.Decision == "allow" && r.Status == 200
		})
	})

	var orderID string
	t.Run("order", func(t *testing.T) {
		resp, body := a.do("POST", "/cgi-bin/purchasing/order", "application/json", []byte(basket))
		var o struct {
			OrderID string `json:"order_id"`
		}
		if resp.StatusCode != 201 || json.Unmarshal(body, &o) != nil || len(o.OrderID) != 32 {
			t.Fatalf("order = %d %q", resp.StatusCode, body)
		}
		orderID = o.OrderID
		if resp, _ := a.do("GET", "/cgi-bin/purchasing/order/"+orderID, "", nil); resp.StatusCode != 200 {
			t.Fatalf("get order = %d", resp.StatusCode)
		}
	})

	t.Run("unregistered script is 404 and audited", func(t *testing.T) {
		resp, _ := a.do("GET", "/cgi-bin/purchasing/admin", "", nil)
		if resp.StatusCode != 404 || resp.Header.Get("X-E2s-Reason") != "reg.unknown_script" {
			t.Fatalf("unregistered = %d %s", resp.StatusCode, resp.Header.Get("X-E2s-Reason"))
		}
		a.audited(func(r auditlog.Record) bool {
			return r.Script == "purchasing/admin" && r.Decision == "deny" && r.Reason == "reg.unknown_script" && r.Caller == "outside"
		})
	})

	t.Run("outside may not call the key handler's sign", func(t *testing.T) {
		resp, body := a.do("POST", "/cgi-bin/keyhandler/sign-offer", "application/json", []byte(`{}`))
		if resp.StatusCode != 403 || resp.Header.Get("X-E2s-Reason") != "pol.caller_clearance" {
			t.Fatalf("direct sign = %d %s %q", resp.StatusCode, resp.Header.Get("X-E2s-Reason"), body)
		}
		a.audited(func(r auditlog.Record) bool {
			return r.Script == "keyhandler/sign-offer" && r.Caller == "outside" && r.Decision == "deny" && r.Reason == "pol.caller_clearance"
		})
	})

	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			method, path, ctype, body string
			status                    int
		}{
			{"DELETE", "/cgi-bin/purchasing/catalogue", "", "", 405},
			{"POST", "/cgi-bin/purchasing/basket", "text/plain", basket, 415},
			{"POST", "/cgi-bin/purchasing/basket", "application/json", `{"items":[`, 400},
			{"POST", "/cgi-bin/purchasing/basket", "application/json", `{"items":[{"sku":"NOPE","qty":1}]}`, 400},
			{"POST", "/cgi-bin/purchasing/basket", "application/json", strings.Repeat(" ", 70000) + basket, 413},
			{"POST", "/cgi-bin/purchasing/basket", "application/json", strings.Repeat(" ", 2<<20), 413},
		}
		for _, tt := range tests {
			resp, body := a.do(tt.method, tt.path, tt.ctype, []byte(tt.body))
			if resp.StatusCode != tt.status {
				t.Errorf("%s %s (%s) = %d %q, want %d", tt.method, tt.path, tt.ctype, resp.StatusCode, body, tt.status)
			}
		}
	})

	t.Run("confinement layers", func(t *testing.T) {
		st, _ := a.status()
		if runtime == "exec" {
			if st.Confinement != "lowered" {
				t.Fatalf("exec runtime with confinement %q", st.Confinement)
			}
			a.audited(func(r auditlog.Record) bool {
				return r.Caller == "supervisor" && r.Reason == "sup.confinement_lowered"
			})
			return
		}
		for n, c := range st.Compartments {
			for _, layer := range []string{"userns", "pidns", "mntns", "ipcns", "utsns", "netns", "cgroupns", "readonly-root", "no-caps", "no-new-privs", "seccomp", "cgroup-limits", "landlock-rules", "cgroup-bpf"} {
				if !slices.Contains(c.Layers, layer) {
					t.Errorf("%s: layer %s not enforced (have %v)", n, layer, c.Layers)
				}
			}
		}
		if !slices.Contains(st.Compartments["inside"].Layers, "nftables") {
			t.Errorf("inside: no nftables layer (have %v)", st.Compartments["inside"].Layers)
		}
		if runtime == "containerd" {
			// Only what needs a handed-over fd (outside, inside) runs
			// under runc; the rest must really be containerd tasks.
			for _, n := range []string{"purchasing", "payment", "keyhandler"} {
				if !slices.Contains(st.Compartments[n].Layers, "runtime:containerd") {
					t.Errorf("%s: not a containerd task (layers %v)", n, st.Compartments[n].Layers)
				}
			}
		}
	})

	t.Run("kernel denial inside a compartment is audited", func(t *testing.T) {
		if runtime == "exec" {
			return // the exec baseline has no kernel layer to deny it
		}
		// An attacker process joins purchasing's cgroup and tries to
		// connect out: the cgroup BPF program refuses, and the denial
		// travels supervisor → gate agent → audit log.
		cg := "/sys/fs/cgroup/unified/" + a.instance + "/purchasing"
		if _, err := os.Stat(cg); err != nil {
			t.Fatalf("purchasing's cgroup: %v", err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestAttackerInCgroup$")
		cmd.Env = append(os.Environ(), "E2S_ATTACK_CGROUP="+cg)
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("connect refused: operation not permitted")) {
			t.Fatalf("attacker: %v\n%s", err, out)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			recs, _ := auditlog.Read(a.auditLog())
			for _, r := range recs {
				if r.Caller == "purchasing" && r.Reason == "kernel.connect_denied" && strings.Contains(r.Detail, "192.0.2.1") {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("kernel denial not in the audit log")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("thin compartments answer through the gate", func(t *testing.T) {
		for _, p := range []string{"/cgi-bin/payment/health", "/cgi-bin/inside/health"} {
			if resp, body := a.do("GET", p, "", nil); resp.StatusCode != 200 {
				t.Errorf("%s = %d %q", p, resp.StatusCode, body)
			}
		}
	})

	t.Run("each compartment runs under its own uid", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Fatal("the end-to-end test runs as root (make test in CI)")
		}
		st, _ := a.status()
		seen := map[string]string{}
		for n, c := range st.Compartments {
			b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.Pid), "status"))
			if err != nil {
				t.Fatal(err)
			}
			uid := procField(string(b), "Uid:")
			if uid == "0" || seen[uid] != "" {
				t.Errorf("%s runs as uid %s (also %s)", n, uid, seen[uid])
			}
			seen[uid] = n
		}
	})

	t.Run("kill -9 purchasing: restarted, order survives", func(t *testing.T) {
		st, _ := a.status()
		old := st.Compartments["purchasing"].Pid
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		st = a.waitRunning(map[string]int{"purchasing": old})
		if st.Compartments["purchasing"].Restarts < 1 {
			t.Fatalf("restart not counted: %+v", st.Compartments["purchasing"])
		}
		var resp *http.Response
		var body []byte
		for i := 0; i < 50; i++ { // the gate learns of the new process right after it is up
			resp, body = a.do("GET", "/cgi-bin/purchasing/order/"+orderID, "", nil)
			if resp.StatusCode != 503 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(orderID)) {
			t.Fatalf("order after restart = %d %q", resp.StatusCode, body)
		}
		if resp, _ := a.do("POST", "/cgi-bin/purchasing/offer", "application/json", []byte(basket)); resp.StatusCode != 200 {
			t.Fatalf("offer after restart = %d", resp.StatusCode)
		}
	})

	t.Run("SIGTERM stops everything", func(t *testing.T) {
		st, _ := a.status()
		if err := a.stop(); err != nil {
			t.Fatal(err)
		}
		for n, c := range st.Compartments {
			if syscall.Kill(c.Pid, 0) == nil {
				t.Errorf("%s (pid %d) still running after shutdown", n, c.Pid)
			}
		}
		if syscall.Kill(st.GatePid, 0) == nil {
			t.Errorf("gate agent (pid %d) still running", st.GatePid)
		}
		// The gate agent confined itself with Landlock once it was set up.
		if !strings.Contains(a.logs.String(), `"msg":"gate agent confined"`) {
			t.Error("the gate agent did not report its Landlock confinement")
		}
		// Nothing of this instance is left on the host (containerd's own
		// containers, tasks and shims are checked when its daemon stops).
		left, _ := filepath.Glob("/sys/fs/cgroup/*/" + a.instance)
		netns, _ := filepath.Glob("/run/netns/" + a.instance + "-*")
		for _, l := range append(left, netns...) {
			t.Errorf("left after shutdown: %s", l)
		}
	})
}

// An invalid config file is refused with the field and the reason.
func TestBadConfigRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("version: 1\ncompartments:\n  payment:\n    label: topsecret\n"), 0o644)
	out, err := exec.Command(filepath.Join(binDir, "e2sgated"), "-config", p).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("compartments.payment.label")) || !bytes.Contains(out, []byte("classification must be one of")) {
		t.Fatalf("bad config: err=%v\n%s", err, out)
	}
}

func procField(status, key string) string {
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, key) {
			f := strings.Fields(l)
			if len(f) > 1 {
				return f[1]
			}
		}
	}
	return ""
}

// TestAttackerInCgroup is the attacker of the kernel-denial test: run as a
// child, it moves itself into a compartment's cgroup and connects out.
func TestAttackerInCgroup(t *testing.T) {
	cg := os.Getenv("E2S_ATTACK_CGROUP")
	if cg == "" {
		return // only meaningful as the child of TestAppliance
	}
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte("0"), 0o644); err != nil {
		t.Fatalf("join cgroup: %v", err)
	}
	c, err := net.DialTimeout("tcp", "192.0.2.1:80", 3*time.Second)
	if err == nil {
		c.Close()
		t.Fatal("connect from inside the compartment's cgroup succeeded")
	}
	if !errors.Is(err, syscall.EPERM) {
		t.Fatalf("connect failed, but not by the cgroup program: %v", err)
	}
	fmt.Println("connect refused: operation not permitted")
}

// A gate agent that cannot start (here: the audit log was tampered with)
// is retried, then the whole appliance stops with the reason: it never
// serves calls it cannot audit.
func TestTamperedAuditLogStopsTheAppliance(t *testing.T) {
	dir, err := os.MkdirTemp("", "e2sgate-tamper")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	if err := os.MkdirAll(filepath.Join(dir, "data", "audit"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "audit", "audit.log"), []byte("{\"forged\":true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("version: 1\ninstance: e2etamper\nlisten: 127.0.0.1:0\nrun_dir: %s/run\ndata_dir: %s/data\nbin_dir: %s\nruntime: exec\nconfinement: lowered\nrestart:\n  initial_backoff: 50ms\n  max_backoff: 100ms\n  max_crashes: 3\n  window: 1m\n",
		dir, dir, binDir)
	p := filepath.Join(dir, "e2sgate.yaml")
	os.WriteFile(p, []byte(cfg), 0o644)
	cmd := exec.Command(filepath.Join(binDir, "e2sgated"), "-config", p)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("e2sgated kept running with an unusable audit log:\n%s", out.String())
	}
	if err == nil || !bytes.Contains(out.Bytes(), []byte("gate agent cannot stay up")) || !bytes.Contains(out.Bytes(), []byte("audit log tampered")) {
		t.Fatalf("exit %v, want failure naming the gate agent and the tampered log:\n%s", err, out.String())
	}
}
