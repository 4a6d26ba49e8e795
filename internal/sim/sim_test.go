package sim

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeProgram writes a shell script that records its arguments in
// NAME.args and, unless it is -init, waits to be stopped.
func fakeProgram(t *testing.T, dir, name string) {
	t.Helper()
	script := "#!/bin/sh\necho \"$@\" > " + filepath.Join(dir, name+".args") + "\n" +
		"case \"$1\" in -init) exit 0;; esac\nexec sleep 60\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func testConfig(t *testing.T) Config {
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // the back office may run as another uid
	return Config{BinDir: filepath.Join(dir, "bin"), DataDir: filepath.Join(dir, "data"), Instance: "e2st",
		InsideAddress: "10.77.0.2/24", Spool: filepath.Join(dir, "spool"),
		SpoolUID: os.Getuid(), SpoolGID: os.Getgid(), Log: slog.New(slog.DiscardHandler)}
}

func withPrograms(t *testing.T, c Config, names ...string) {
	t.Helper()
	if err := os.MkdirAll(c.BinDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		fakeProgram(t, c.BinDir, n)
	}
}

func args(t *testing.T, c Config, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.BinDir, name+".args"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func TestPrepare(t *testing.T) {
	t.Run("programs missing", func(t *testing.T) {
		c := testConfig(t)
		withPrograms(t, c, "acquirer")
		if _, err := Prepare(c); !errors.Is(err, ErrNoPrograms) {
			t.Fatalf("Prepare: %v", err)
		}
	})
	t.Run("inside address not IPv4", func(t *testing.T) {
		c := testConfig(t)
		c.InsideAddress = "fd00::2/64"
		withPrograms(t, c, "acquirer", "backoffice")
		if _, err := Prepare(c); !errors.Is(err, ErrNotIPv4) {
			t.Fatalf("Prepare: %v", err)
		}
	})
	t.Run("acquirer on host .10 with its certificate", func(t *testing.T) {
		c := testConfig(t)
		withPrograms(t, c, "acquirer", "backoffice")
		a, err := Prepare(c)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(c.DataDir, "simulators")
		want := Acquirer{Addr: "10.77.0.10:8583", Cert: filepath.Join(dir, "acquirer.pem"), Key: filepath.Join(dir, "acquirer.key")}
		if a != want {
			t.Fatalf("acquirer %+v, want %+v", a, want)
		}
		if got := args(t, c, "acquirer"); got != "-init -cert "+a.Cert+" -key "+a.Key+" -listen "+a.Addr {
			t.Fatalf("acquirer -init run with %q", got)
		}
	})
}

func TestRunStartsOnceReadyAndStopsWithCtx(t *testing.T) {
	c := testConfig(t)
	withPrograms(t, c, "acquirer", "backoffice")
	var ready atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, c, "10.77.0.10:8583", ready.Load) }()

	time.Sleep(300 * time.Millisecond)
	if args(t, c, "acquirer") != "" || args(t, c, "backoffice") != "" {
		t.Fatal("a simulator started before inside was up")
	}
	ready.Store(true)
	dir := filepath.Join(c.DataDir, "simulators")
	wantAcq := "-netns e2st-acquirer -internal-netns e2st-internal-net -listen 10.77.0.10:8583 -cert " +
		filepath.Join(dir, "acquirer.pem") + " -key " + filepath.Join(dir, "acquirer.key") + " -ledger " + filepath.Join(dir, "ledger.jsonl")
	wantBO := "-spool " + c.Spool
	deadline := time.Now().Add(10 * time.Second)
	for (args(t, c, "acquirer") != wantAcq || args(t, c, "backoffice") != wantBO) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := args(t, c, "acquirer"); got != wantAcq {
		t.Fatalf("acquirer run with %q, want %q", got, wantAcq)
	}
	if got := args(t, c, "backoffice"); got != wantBO {
		t.Fatalf("backoffice run with %q, want %q", got, wantBO)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}
