package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProgress: bytes, total and rate on one rewritten line, ended by done.
func TestProgress(t *testing.T) {
	var w bytes.Buffer
	p := &Progress{W: &w, Verb: "protect"}
	r := p.wrap(bytes.NewReader(make([]byte, 3<<20)), 3<<20)
	p.last = time.Time{} // print at the first read
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	p.done()
	out := w.String()
	if !strings.HasPrefix(out, "\re2s: protect ") || !strings.Contains(out, "3.0 MiB of 3.0 MiB") ||
		!strings.Contains(out, "MiB/s") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("progress output %q", out)
	}
	var quiet *Progress
	if r := quiet.wrap(strings.NewReader("x"), 1); r == nil {
		t.Fatal("nil progress must pass the reader through")
	}
	quiet.done()
}

// TestPendingFile: nothing appears under the name until commit; abort and
// an interrupted reader leave nothing; an existing file needs force.
func TestPendingFile(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "doc")
	p, err := createOutput(out, 0o600, false)
	if err != nil {
		t.Fatal(err)
	}
	p.Write([]byte("half"))
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("output visible before commit")
	}
	p.abort()
	if m, _ := filepath.Glob(filepath.Join(dir, ".*")); len(m) != 0 {
		t.Fatalf("abort left %v", m)
	}
	os.WriteFile(out, []byte("old"), 0o600)
	if _, err := createOutput(out, 0o600, false); !errors.Is(err, ErrOutputExists) {
		t.Fatalf("existing output: %v, want ErrOutputExists", err)
	}
	p, err = createOutput(out, 0o600, true)
	if err != nil {
		t.Fatal(err)
	}
	p.Write([]byte("new"))
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Fatal("forced output replaced before commit")
	}
	if err := p.commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "new" {
		t.Fatalf("after commit: %q", b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (ctxReader{ctx: ctx, r: strings.NewReader("x")}).Read(make([]byte, 1)); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("cancelled read: %v, want ErrInterrupted", err)
	}
	if _, err := createOutput(filepath.Join(dir, "no", "doc"), 0o600, false); !errors.Is(err, ErrOutputDir) {
		t.Fatalf("missing directory: %v, want ErrOutputDir", err)
	}
}
