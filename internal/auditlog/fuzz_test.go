package auditlog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// FuzzVerify reads any bytes as an audit log and its checkpoints, as the
// auditor's copy may hold them: Read and Verify answer without panicking,
// and a log that is not the one written is never reported whole.
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := OpenWith(path, testOptions(dir))
	if err != nil {
		f.Fatal(err)
	}
	for i := range 25 {
		if err := l.Append(Record{Caller: "outside", Script: "purchasing/catalogue", Decision: "allow", Reason: "pol.allowed", Status: 200, Detail: fmt.Sprint(i), Count: i % 3}); err != nil {
			f.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	log, _ := os.ReadFile(path)
	cps, _ := os.ReadFile(checkpointsPath(path))
	pub := filepath.Join(dir, "k.pub")
	if rep, err := Verify(path, pub); err != nil || !rep.OK() {
		f.Fatalf("the log as written does not verify: %v %+v", err, rep)
	}
	f.Add(log, cps)
	f.Add(log[:len(log)/2], cps)
	f.Add([]byte("{\"seq\":0}\n"), []byte(nil))
	f.Add([]byte(nil), cps)
	p := filepath.Join(f.TempDir(), "audit.log") // one per worker process; inputs run one at a time
	f.Fuzz(func(t *testing.T, lg, cp []byte) {
		if err := os.WriteFile(p, lg, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(checkpointsPath(p), cp, 0o600); err != nil {
			t.Fatal(err)
		}
		Read(p)
		Search(p, Filter{Compartment: "outside"}, 3)
		rep, err := Verify(p, pub)
		if err != nil || !rep.OK() {
			return
		}
		// What a signed checkpoint covers is the written log's; records
		// past the last checkpoint are reported unsigned, not proven.
		got, want := bytes.SplitAfter(lg, []byte("\n")), bytes.SplitAfter(log, []byte("\n"))
		if rep.Covered > uint64(len(got)) || rep.Covered > uint64(len(want)) {
			t.Fatalf("%d records covered of %d read, %d written", rep.Covered, len(got), len(want))
		}
		for i := range rep.Covered {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("record %d is not the written one but verifies: %q", i, got[i])
			}
		}
	})
}
