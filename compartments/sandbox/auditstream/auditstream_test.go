package auditstream

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/testutil"
)

// Records as this kernel (6.18, Landlock ABI 7) writes them.
const (
	access   = `audit(1796320867.940:400006): domain=1725d7b02 blockers=fs.read_file path="/etc/passwd" dev="vda" ino=1196179`
	domain   = `audit(1796320867.940:400006): domain=1725d7b02 status=allocated mode=enforcing pid=999999 uid=64002 exe="/bin/purchasing" comm="purchasing"`
	syscallR = `audit(1796320867.940:400006): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c items=1 ppid=1 pid=999998 auid=4294967295 uid=64001 gid=64001 comm="outside" exe="/bin/outside" key=(null)`
	eoe      = `audit(1796320867.940:400006): `
	netR     = `audit(1796320868.100:400010): domain=1725d7b02 blockers=net.connect_tcp daddr=127.0.0.1 dest=9`
)

func TestParse(t *testing.T) {
	serial, f, ok := parse([]byte(access))
	if !ok || serial != 400006 || f["blockers"] != "fs.read_file" || f["path"] != "/etc/passwd" || f["domain"] != "1725d7b02" || f["ino"] != "1196179" {
		t.Errorf("parse(access) = %d %v %v", serial, f, ok)
	}
	for _, bad := range []string{"", "type=1300 msg=x", "audit(1796320867.940): a=b", "audit(x:y): a=b"} {
		if _, _, ok := parse([]byte(bad)); ok {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

// TestFinishMaps: a denial is mapped by the task of its SYSCALL record
// (by uid here, the pid is gone), or, without one, by the domain's
// creator; denials of tasks of no sandbox of this appliance are dropped.
func TestFinishMaps(t *testing.T) {
	s := &Stream{mapper: Mapper{Parent: "e2e1", UIDs: map[uint32]string{64001: "outside", 64002: "purchasing"}},
		log: slog.New(slog.DiscardHandler), domains: map[string]string{}}
	var got []Denial
	on := func(d Denial) { got = append(got, d) }
	groups := map[uint64]*group{}
	now := time.Now()
	for _, r := range []struct {
		typ  uint16
		text string
	}{{auditLLAccess, access}, {auditLLDomain, domain}, {auditSyscall, syscallR}, {auditEOE, eoe}} {
		s.add(groups, r.typ, []byte(r.text), now, on)
	}
	if len(got) != 1 || got[0].Compartment != "outside" || got[0].Access != "fs.read_file" ||
		got[0].Detail != `fs.read_file path="/etc/passwd" pid=999998 exe=outside` || got[0].Net() {
		t.Fatalf("with a syscall record: %+v", got)
	}
	// The domain was created by purchasing's uid: a later denial without a
	// syscall record is purchasing's.
	got = nil
	s.add(groups, auditLLAccess, []byte(netR), now, on)
	for serial, g := range groups {
		s.finish(g, on)
		delete(groups, serial)
	}
	if len(got) != 1 || got[0].Compartment != "purchasing" || !got[0].Net() || !strings.HasPrefix(got[0].Detail, `net.connect_tcp daddr="127.0.0.1" dest="9"`) {
		t.Fatalf("by domain: %+v", got)
	}
	// Not ours: dropped.
	got = nil
	s.domains = map[string]string{}
	s.add(groups, auditLLAccess, []byte(netR), now, on)
	for _, g := range groups {
		s.finish(g, on)
	}
	if len(got) != 0 {
		t.Errorf("foreign denial reported: %+v", got)
	}
	// A syscall record of an event that is not Landlock's starts nothing.
	groups = map[uint64]*group{}
	s.add(groups, auditSyscall, []byte(syscallR), now, on)
	if len(groups) != 0 {
		t.Errorf("syscall record kept: %v", groups)
	}
}

// TestByCgroup maps this test's own process by its cgroup path.
func TestByCgroup(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		testutil.Missing(t, "/proc/self/cgroup")
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		segs := strings.Split(strings.Trim(parts[2], "/"), "/")
		if len(segs) < 2 {
			continue
		}
		m := Mapper{Parent: segs[0]}
		if got := m.byCgroup(os.Getpid()); got != segs[1] {
			t.Errorf("byCgroup under %q = %q, want %q", segs[0], got, segs[1])
		}
		if got := (Mapper{Parent: "not-" + segs[0]}).byCgroup(os.Getpid()); got != "" {
			t.Errorf("byCgroup under another parent = %q", got)
		}
		return
	}
	t.Log("this process sits in no nested cgroup; only the e2e test maps by cgroup here")
}
