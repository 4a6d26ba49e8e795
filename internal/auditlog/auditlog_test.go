package auditlog

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func testOptions(dir string) Options {
	return Options{Every: 10, Syslog: "off", KeyFile: filepath.Join(dir, "k.key"), PubFile: filepath.Join(dir, "k.pub")}
}

func TestAppendDurableAndOrdered(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := OpenWith(path, testOptions(dir))
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
	// Every acknowledged record is in the file before Close, seq = position.
	recs, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 50 {
		t.Fatalf("read %d records, want 50", len(recs))
	}
	seen := map[string]bool{}
	for i, r := range recs {
		seen[r.ReqID] = true
		if r.Seq != uint64(i) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
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
	rep, err := Verify(path, filepath.Join(dir, "k.pub"))
	if err != nil || !rep.OK() || rep.Records != 50 || rep.Covered != 50 || rep.Unsigned != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func TestOpenFailsOnMissingDir(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "audit.log")); err == nil {
		t.Fatal("opened a log in a missing directory")
	}
}

// writeLog writes n records one at a time (so checkpoints fall every 10)
// and closes the log.
func writeLog(t *testing.T, dir string, n int) string {
	t.Helper()
	path := filepath.Join(dir, "audit.log")
	l, err := OpenWith(path, testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Append(Record{ReqID: fmt.Sprintf("r%03d", i), Caller: "outside", Script: "purchasing/catalogue", Decision: "allow"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func lines(t *testing.T, p string) []string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(b), "\n")
}

func write(t *testing.T, p string, ls []string) {
	if err := os.WriteFile(p, []byte(strings.Join(ls, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Every kind of tampering is found and named: the first bad record, or the
// checkpoint at fault.
func TestVerifyFindsTampering(t *testing.T) {
	tests := []struct {
		name       string
		tamper     func(t *testing.T, path string)
		record, cp int64 // expected first problem; -1 = not named
	}{
		{"untouched", func(*testing.T, string) {}, -2, -2},
		{"edit record", func(t *testing.T, p string) {
			ls := lines(t, p)
			ls[17] = strings.Replace(ls[17], `"allow"`, `"deny"`, 1)
			write(t, p, ls)
		}, 17, -1},
		{"edit record and its leaf hash", func(t *testing.T, p string) {
			ls := lines(t, p)
			ls[17] = strings.Replace(ls[17], `"allow"`, `"deny"`, 1)
			write(t, p, ls)
			hs, _ := os.ReadFile(p + ".hashes")
			copy(hs[17*32:], leafHash([]byte(strings.TrimSuffix(ls[17], "\n"))))
			os.WriteFile(p+".hashes", hs, 0o600)
		}, 10, 1},
		{"delete record", func(t *testing.T, p string) {
			ls := lines(t, p)
			write(t, p, append(ls[:23:23], ls[24:]...))
		}, 23, -1},
		{"reorder records", func(t *testing.T, p string) {
			ls := lines(t, p)
			ls[30], ls[31] = ls[31], ls[30]
			write(t, p, ls)
		}, 30, -1},
		{"truncate records", func(t *testing.T, p string) {
			ls := lines(t, p)
			write(t, p, ls[:40])
			os.Truncate(p+".hashes", 40*32)
		}, 40, 4},
		{"cut last line", func(t *testing.T, p string) {
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-5)
		}, 49, -1},
		{"edit checkpoint", func(t *testing.T, p string) {
			ls := lines(t, p+".checkpoints")
			ls[2] = strings.Replace(ls[2], `\n30\n`, `\n31\n`, 1)
			write(t, p+".checkpoints", ls)
		}, -1, 2},
		{"delete checkpoint", func(t *testing.T, p string) {
			ls := lines(t, p+".checkpoints")
			write(t, p+".checkpoints", append(ls[:1:1], ls[2:]...))
		}, -1, 1},
		{"reorder checkpoints", func(t *testing.T, p string) {
			ls := lines(t, p+".checkpoints")
			ls[3], ls[4] = ls[4], ls[3]
			write(t, p+".checkpoints", ls)
		}, -1, 3},
		{"checkpoint from another key", func(t *testing.T, p string) {
			other := t.TempDir()
			o := writeLog(t, other, 50)
			write(t, p+".checkpoints", lines(t, o+".checkpoints"))
		}, -1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeLog(t, dir, 50)
			tc.tamper(t, path)
			rep, err := Verify(path, filepath.Join(dir, "k.pub"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.record == -2 {
				if !rep.OK() || rep.Records != 50 || rep.Covered != 50 || rep.Checkpoints != 5 {
					t.Fatalf("untouched log: %+v", rep)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("tampering not found: %+v", rep)
			}
			p := rep.FirstBad()
			if p.Record != tc.record || (tc.cp != -1 && p.Checkpoint != tc.cp) {
				t.Fatalf("first problem %v, want record %d checkpoint %d; all: %v", p, tc.record, tc.cp, rep.Problems)
			}
			// A tampered log is refused on open: no new checkpoint signs it.
			if _, err := OpenWith(path, testOptions(dir)); tc.name != "cut last line" && !errors.Is(err, ErrTampered) {
				t.Fatalf("open of tampered log: %v", err)
			}
		})
	}
}

// A log reopened after a clean close or a crash goes on where it was.
func TestReopenContinues(t *testing.T) {
	dir := t.TempDir()
	path := writeLog(t, dir, 15)
	// A crash left half a line.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":15,"req_id":"half`)
	f.Close()
	l, err := OpenWith(path, testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 15 {
		t.Fatalf("reopened with %d records, want 15", l.Len())
	}
	for range 7 {
		if err := l.Append(Record{Decision: "deny"}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	rep, err := Verify(path, filepath.Join(dir, "k.pub"))
	if err != nil || !rep.OK() || rep.Records != 22 || rep.Covered != 22 {
		t.Fatalf("verify after reopen: %+v %v", rep, err)
	}
}

// Disk full: Append fails (the gate refuses calls), and works again once
// space is free; the log stays verifiable. A real tmpfs, so it needs root.
func TestDiskFullFailsClosedAndRecovers(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (tests run as root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	path := filepath.Join(dir, "audit.log")
	l, err := OpenWith(path, testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(Record{ReqID: "before"}); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	f, _ := os.Create(filler)
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	big := Record{ReqID: "full", Detail: strings.Repeat("x", 8192)}
	for i := range 3 {
		if err := l.Append(big); !errors.Is(err, ErrUnwritable) {
			t.Fatalf("append %d on a full disk: %v, want ErrUnwritable", i, err)
		}
	}
	os.Remove(filler)
	if err := l.Append(Record{ReqID: "after"}); err != nil {
		t.Fatalf("append once space is free: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs, _ := Read(path)
	if len(recs) != 2 || recs[0].ReqID != "before" || recs[1].ReqID != "after" || recs[1].Seq != 1 {
		t.Fatalf("records after recovery: %+v", recs)
	}
	rep, err := Verify(path, filepath.Join(dir, "k.pub"))
	if err != nil || !rep.OK() {
		t.Fatalf("verify after recovery: %+v %v", rep, err)
	}
}

func TestSyslogForward(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "log.sock")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	o := testOptions(dir)
	o.Syslog = sock
	l, err := OpenWith(filepath.Join(dir, "audit.log"), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(Record{ReqID: "to-syslog", Decision: "deny"}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := pc.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf[:n], []byte(`"req_id":"to-syslog"`)) || !bytes.Contains(buf[:n], []byte("e2sgate-audit")) {
		t.Fatalf("syslog got %q", buf[:n])
	}
	l.Close()
}

func TestSearch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := OpenWith(path, testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		d, c := "allow", "outside"
		if i%3 == 0 {
			d = "deny"
		}
		if i%2 == 0 {
			c = "purchasing"
		}
		l.Append(Record{ReqID: fmt.Sprint(i), Caller: c, Decision: d, User: fmt.Sprint("u", i%5)})
	}
	l.Close()
	tests := []struct {
		f     Filter
		limit int
		want  int
	}{
		{Filter{}, 0, 30},
		{Filter{}, 5, 5},
		{Filter{Decision: "deny"}, 0, 10},
		{Filter{Compartment: "purchasing"}, 0, 15},
		{Filter{Compartment: "purchasing", Decision: "deny"}, 0, 5},
		{Filter{User: "u1"}, 0, 6},
		{Filter{ReqID: "7"}, 0, 1},
	}
	for _, tc := range tests {
		got, err := Search(path, tc.f, tc.limit)
		if err != nil || len(got) != tc.want {
			t.Errorf("Search(%+v, %d) = %d records, %v; want %d", tc.f, tc.limit, len(got), err, tc.want)
		}
	}
	last, _ := Search(path, Filter{}, 3)
	if last[2].ReqID != "29" {
		t.Errorf("tail does not end with the newest record: %+v", last)
	}
}

// A line still being written is no problem on a live log, but a cut-off
// line in a copy is.
func TestVerifyLiveToleratesALineInFlight(t *testing.T) {
	dir := t.TempDir()
	path := writeLog(t, dir, 12)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":12,"req_id":"in fli`)
	f.Close()
	for _, tc := range []struct {
		verify func(string, string) (*Report, error)
		ok     bool
	}{{VerifyLive, true}, {Verify, false}} {
		rep, err := tc.verify(path, filepath.Join(dir, "k.pub"))
		if err != nil || rep.OK() != tc.ok || rep.Records != 12 {
			t.Fatalf("live=%v: %+v %v", tc.ok, rep, err)
		}
	}
}
