package auditlog

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// The quota policy: below 90 % nothing happens; the Append that reaches
// 90 % is followed by one OnQuota call; an Append that would pass 100 % is
// refused with ErrFull (also ErrUnwritable: the caller fails closed) and
// writes nothing, so the log stays whole and verifiable.
func TestQuota(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	o := testOptions(dir)
	o.Quota = 8 << 10
	var warnings []Usage
	o.OnQuota = func(u Usage) { warnings = append(warnings, u) }
	l, err := OpenWith(path, o)
	if err != nil {
		t.Fatal(err)
	}
	rec := Record{Time: time.Unix(0, 0).UTC(), ReqID: "r", Caller: "outside", Script: "purchasing/catalogue", Decision: "allow", Reason: "pol.allowed"}
	var appended int
	var full error
	for appended = 0; appended < 1000; appended++ {
		before := l.Usage()
		if err := l.Append(rec); err != nil {
			full = err
			if before.Percent < QuotaWarn {
				t.Fatalf("refused at %d %%, before the warning", before.Percent)
			}
			break
		}
		u := l.Usage()
		switch {
		case u.Percent < QuotaWarn && len(warnings) != 0:
			t.Fatalf("warned at %d %%", u.Percent)
		case u.Percent >= QuotaWarn && len(warnings) != 1:
			t.Fatalf("%d warnings at %d %%", len(warnings), u.Percent)
		}
	}
	if !errors.Is(full, ErrFull) || !errors.Is(full, ErrUnwritable) {
		t.Fatalf("after %d records: %v, want ErrFull", appended, full)
	}
	if w := warnings[0]; w.By != "quota" || w.Limit != o.Quota || w.Percent < QuotaWarn {
		t.Fatalf("warning %+v", w)
	}
	// Still full: refused again, no second warning, nothing written.
	if err := l.Append(rec); !errors.Is(err, ErrFull) || len(warnings) != 1 || l.Len() != uint64(appended) {
		t.Fatalf("second refusal: %v, %d warnings, %d records", err, len(warnings), l.Len())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(path, o.PubFile)
	if err != nil || !rep.OK() || rep.Records != uint64(appended) {
		t.Fatalf("verify after full: %+v %v", rep, err)
	}
}
