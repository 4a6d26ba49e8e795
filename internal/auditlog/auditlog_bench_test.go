package auditlog

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BenchmarkVerifyMillion writes a log of 1,000,000 records (group commit,
// 256 writers) and times Verify over it:
//
//	go test ./internal/auditlog -run '^$' -bench VerifyMillion -benchtime 1x
func BenchmarkVerifyMillion(b *testing.B) {
	const n = 1_000_000
	dir := b.TempDir()
	path := filepath.Join(dir, "audit.log")
	o := testOptions(dir)
	o.Every = 1000
	l, err := OpenWith(path, o)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	const writers = 256
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += writers {
				rec := Record{Time: time.Now().UTC(), ReqID: fmt.Sprintf("%016x", i), Caller: "outside", Target: "purchasing",
					Script: "purchasing/catalogue", Decision: "allow", Reason: "pol.allowed", Status: 200, LatencyUS: 412}
				if err := l.Append(rec); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("wrote %d records in %v", n, time.Since(start))
	t0 := time.Now()
	l, err = OpenWith(path, o) // a gate agent restart: the log is checked before use
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("reopened (checked) %d records in %v", l.Len(), time.Since(t0))
	l.Close()
	b.ResetTimer()
	for range b.N {
		rep, err := Verify(path, o.PubFile)
		if err != nil || !rep.OK() || rep.Records != n {
			b.Fatalf("verify: %+v %v", rep, err)
		}
		b.Logf("verified %d records, %d checkpoints in %s", rep.Records, rep.Checkpoints, rep.Duration)
	}
}
