package auditlog

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

func TestAppendDurableAndOrdered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Append(Record{ReqID: fmt.Sprint(i), Decision: "allow"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Every acknowledged record is in the file before Close.
	recs, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 50 {
		t.Fatalf("read %d records, want 50", len(recs))
	}
	seen := map[string]bool{}
	for _, r := range recs {
		seen[r.ReqID] = true
	}
	if len(seen) != 50 {
		t.Fatalf("%d distinct records, want 50", len(seen))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(Record{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func TestOpenFailsOnMissingDir(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "audit.log")); err == nil {
		t.Fatal("opened a log in a missing directory")
	}
}
