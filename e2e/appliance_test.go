// Package e2e starts the real appliance — e2sgated with its real gate
// agent and compartment processes — and talks to it as an Internet client.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/daemon/supervisor"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "e2sgate-bin")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755)
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/e2sgated", "../cmd/outside", "../cmd/purchasing", "../cmd/payment", "../cmd/keyhandler", "../cmd/inside")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build programs:", err)
		os.Exit(1)
	}
	// The sandboxes run the pinned runc `make build` put in bin/, found
	// beside e2sgated as in an installed appliance.
	runc, err := sandbox.PinnedRunc(filepath.Join("..", "bin"))
	if err == nil {
		err = os.Symlink(runc, filepath.Join(dir, "runc"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	removeAccounts()
	os.RemoveAll(dir)
	os.Exit(code)
}

// appliance is one running e2sgated.
type appliance struct {
	t        testing.TB
	dir      string
	instance string // cgroup parent, container id and netns prefix
	cmd      *exec.Cmd
	logs     *bytes.Buffer
	done     chan error
	URL      string
	client   *http.Client
}

func (a *appliance) runDir() string   { return filepath.Join(a.dir, "run") }
func (a *appliance) dataDir() string  { return filepath.Join(a.dir, "data") }
func (a *appliance) auditLog() string { return filepath.Join(a.dataDir(), "audit", "audit.log") }

// startAppliance starts e2sgated with a config in a fresh directory and
// waits until every compartment runs. extra is appended to the config.
func startAppliance(t testing.TB, extra string) *appliance {
	t.Helper()
	return startApplianceIn(t, "", extra)
}

// startApplianceIn is startAppliance with its directories under base ("":
// the system's temporary directory). Under /tmp every mount of a
// compartment lies beneath its own private /tmp, which its Landlock rules
// let it read and write; a test of those rules needs another base.
func startApplianceIn(t testing.TB, base, extra string) *appliance {
	t.Helper()
	dir, err := os.MkdirTemp(base, "e2sgate-e2e")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // compartments run as their own uids and must reach their dirs
	// A unique instance name keeps parallel appliances' cgroups, container
	// ids and network namespaces apart.
	instance := fmt.Sprintf("e2e%x", rand.Uint32()&0xffffff)
	cfg := fmt.Sprintf("version: 1\ninstance: %s\nlisten: 127.0.0.1:0\nrun_dir: %s/run\ndata_dir: %s/data\nbin_dir: %s\nrestart:\n  initial_backoff: 100ms\n  max_backoff: 1s\n  max_crashes: 5\n  window: 1m\n%s",
		instance, dir, dir, binDir, extra)
	cfgPath := filepath.Join(dir, "e2sgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &appliance{t: t, dir: dir, instance: instance, logs: &bytes.Buffer{}, done: make(chan error, 1)}
	a.cmd = exec.Command(filepath.Join(binDir, "e2sgated"), "-config", cfgPath)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("appliance log:\n%s", a.logs.String())
		}
		os.RemoveAll(dir)
	})
	st := a.waitRunning(nil)
	a.URL = strings.TrimSuffix(st.URL, "/")
	a.client = a.httpClient()
	return a
}

// stop sends SIGTERM and waits for a clean exit.
func (a *appliance) stop() error {
	if a.cmd.ProcessState != nil {
		return nil
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		return err
	case <-time.After(20 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("e2sgated did not stop within 20s of SIGTERM")
	}
}

func (a *appliance) status() (supervisor.Status, error) {
	var st supervisor.Status
	b, err := os.ReadFile(filepath.Join(a.runDir(), "status.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// waitRunning waits until every compartment is running and, for those in
// notPid, under a pid other than the one given.
func (a *appliance) waitRunning(notPid map[string]int) supervisor.Status {
	a.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st, err := a.status()
		if err == nil && st.URL != "" && len(st.Compartments) == 5 {
			ok := true
			for n, c := range st.Compartments {
				if c.State != supervisor.Running || (notPid != nil && notPid[n] == c.Pid) {
					ok = false
				}
			}
			if ok {
				return st
			}
		}
		select {
		case err := <-a.done:
			a.t.Fatalf("e2sgated exited: %v\n%s", err, a.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	st, _ := a.status()
	a.t.Fatalf("compartments not running after 60s: %+v\n%s", st, a.logs.String())
	return st
}

// httpClient trusts exactly the web front's certificate.
func (a *appliance) httpClient() *http.Client {
	a.t.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(a.dataDir(), "outside", "tls", "tls.pem"))
	if err != nil {
		a.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
		MaxIdleConnsPerHost: 64,
	}}
}

func (a *appliance) do(method, path, ctype string, body []byte) (*http.Response, []byte) {
	a.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, a.URL+path, bytes.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp, b
}

// audited waits for an audit record matching pred (records are durable
// before the answer, so it is normally there at once).
func (a *appliance) audited(pred func(auditlog.Record) bool) auditlog.Record {
	a.t.Helper()
	recs, err := auditlog.Read(a.auditLog())
	if err != nil {
		a.t.Fatal(err)
	}
	for _, r := range recs {
		if pred(r) {
			return r
		}
	}
	a.t.Fatalf("no matching audit record among %d", len(recs))
	return auditlog.Record{}
}
