package netattach

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/compartments/sandbox/bpfguard"
	"github.com/e2sgate/e2sgate/compartments/sandbox/netns"
	"github.com/e2sgate/e2sgate/images"
	"github.com/e2sgate/e2sgate/internal/testutil/netnstest"
)

// The internal network of these tests (in a scratch internal namespace;
// nothing routes out of it).
const (
	insideAddr = "10.77.0.2/24"
	gateway    = "10.77.0.1"
	backOffice = "10.77.0.10" // inside may connect to port 8080
	otherHost  = "10.77.0.12"
	external   = "203.0.113.10:443" // TEST-NET-3
)

var (
	probeOnce sync.Once
	probeBin  string
	probeErr  error
	testTop   string
)

func TestMain(m *testing.M) {
	code := func() int {
		var err error
		if testTop, err = os.MkdirTemp("", "netattach-test-"); err != nil {
			return 1
		}
		defer os.RemoveAll(testTop)
		// Compartment uids must reach their images.
		os.Chmod(testTop, 0o755)
		return m.Run()
	}()
	os.Exit(code)
}

func netprobe(t *testing.T) string {
	t.Helper()
	probeOnce.Do(func() {
		probeBin = filepath.Join(testTop, "netprobe")
		probeErr = images.CompileStatic(context.Background(), "./testdata/netprobe", probeBin)
	})
	if probeErr != nil {
		t.Fatal(probeErr)
	}
	return probeBin
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// events collects denials.
type events struct {
	mu  sync.Mutex
	all []bpfguard.Event
}

func (e *events) add(ev bpfguard.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) of(pid int) []bpfguard.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []bpfguard.Event
	for _, ev := range e.all {
		if ev.Pid == pid {
			out = append(out, ev)
		}
	}
	return out
}

type env struct {
	runc     *sandbox.Runc
	host     *netns.Host
	internal *netns.Namespace
	events   *events
}

// newEnv is the supervisor's setup in small: a runc runtime whose Net is an
// Attacher, with scratch state, cgroups and internal network.
func newEnv(t *testing.T) env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("netattach tests run runc and need root (they do in CI)")
	}
	dir, err := os.MkdirTemp(testTop, "rt-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	b := make([]byte, 3)
	rand.Read(b)
	tag := hex.EncodeToString(b)
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	host := netns.New(netns.Config{Prefix: "e2st" + tag + "-", Logger: log})
	ev := &events{}
	runc, err := sandbox.PinnedRunc(filepath.Join("..", "..", "..", "..", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	r := &sandbox.Runc{
		Binary:       runc,
		StateDir:     filepath.Join(dir, "state"),
		ImageDir:     filepath.Join(dir, "images"),
		CgroupParent: "e2sgate-nettest-" + tag,
		IDPrefix:     "n" + tag + "-",
		Net:          New(host, ev.add, log),
		Log:          log,
	}
	t.Cleanup(func() {
		if err := host.Close(); err != nil {
			t.Error(err)
		}
		for _, root := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory"} {
			if _, err := os.Stat(filepath.Join(root, r.CgroupParent)); err == nil {
				t.Errorf("cgroup left: %s", filepath.Join(root, r.CgroupParent))
			}
		}
		ents, _ := os.ReadDir("/run/netns")
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "e2st"+tag) {
				t.Errorf("namespace left: %s", e.Name())
			}
		}
	})
	in, err := host.Internal()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{gateway, backOffice, otherHost} {
		if out, err := exec.Command("ip", "-n", in.Name(), "addr", "add", a+"/24", "dev", "e2sint0").CombinedOutput(); err != nil {
			t.Fatalf("ip addr add %s: %v %s", a, err, out)
		}
	}
	for _, a := range []string{backOffice + ":8080", backOffice + ":8081", otherHost + ":8080"} {
		listenIn(t, in, a)
	}
	return env{runc: r, host: host, internal: in, events: ev}
}

func listenIn(t *testing.T, ns *netns.Namespace, addr string) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// run starts the probe as compartment name in a real runc sandbox, waits
// for its report and returns it with the program's host pid.
func run(t *testing.T, e env, name string, uid uint32, n sandbox.Network, landlock bool, probes []netnstest.Probe, files ...*os.File) (netnstest.Report, int) {
	t.Helper()
	orders, err := netnstest.Env(probes...)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	s := sandbox.Spec{
		Name:       name,
		Label:      "confidential:" + name,
		Binary:     netprobe(t),
		UID:        uid,
		GID:        uid,
		Env:        []string{orders},
		Network:    n,
		Limits:     sandbox.Limits{MemoryBytes: 128 << 20, Pids: 64, CPUPercent: 50},
		Stdout:     &stdout,
		Stderr:     &stderr,
		ExtraFiles: files,
	}
	if !landlock {
		s.Env = append(s.Env, "E2S_NETPROBE_LANDLOCK=0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := e.runc.Start(ctx, s)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	pid := p.Pid()
	werr := p.Wait()
	if err := p.Close(); err != nil {
		t.Errorf("close %s: %v", name, err)
	}
	var rep netnstest.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%s: report %q: %v (exit %v)\nstderr: %s", name, stdout.String(), err, werr, stderr.String())
	}
	return rep, pid
}

func tcp(addr string) netnstest.Probe {
	return netnstest.Probe{Kind: netnstest.TCP, Addr: addr, Timeout: 500 * time.Millisecond}
}

// attack is one probe and what must come of it.
type attack struct {
	name    string
	probe   netnstest.Probe
	allowed bool
	// event: the cgroup programs must report this denial (kind, and the
	// destination for connect and sendmsg kinds).
	event bpfguard.Kind
	dst   string
}

// TestNetworkAttacksInRunc runs the network attacks from inside
// real runc sandboxes, one per compartment, each with the network the
// supervisor gives it and every layer on: namespace, nftables, cgroup BPF,
// seccomp and (first pass) Landlock. The second pass leaves Landlock out
// to show the network layers hold alone; there the cgroup programs must
// report every refused IP attempt they see.
func TestNetworkAttacksInRunc(t *testing.T) {
	e := newEnv(t)
	// A service on the host's own loopback that no compartment may reach.
	hostL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostL.Close()
	var hostHits atomic.Int32
	go func() {
		for {
			c, err := hostL.Accept()
			if err != nil {
				return
			}
			hostHits.Add(1)
			c.Close()
		}
	}()
	hostAddr := hostL.Addr().String()
	_, hostPort, _ := net.SplitHostPort(hostAddr)

	inside := sandbox.Network{
		Mode:    sandbox.NetVeth,
		Address: netip.MustParsePrefix(insideAddr),
		Allow:   []sandbox.Endpoint{{Prefix: netip.MustParsePrefix(backOffice + "/32"), Port: 8080}},
	}
	dns := netnstest.Probe{Kind: netnstest.DNS, Addr: "acquirer.example", Timeout: 500 * time.Millisecond}
	for _, landlock := range []bool{true, false} {
		for i, tc := range []struct {
			name string
			net  sandbox.Network
		}{
			{"outside", sandbox.Network{Mode: sandbox.NetNone}},
			{"purchasing", sandbox.Network{Mode: sandbox.NetLoopback}},
			{"payment", sandbox.Network{Mode: sandbox.NetLoopback}},
			{"keyhandler", sandbox.Network{Mode: sandbox.NetLoopback}},
			{"inside", inside},
		} {
			pass := map[bool]string{true: "landlock", false: "no-landlock"}[landlock]
			t.Run(pass+"/"+tc.name, func(t *testing.T) {
				// What the cgroup programs see: without a network no IP
				// socket is made at all; with one, the connect is refused.
				see := func(kind bpfguard.Kind, dst string) (bpfguard.Kind, string) {
					if tc.net.Mode == sandbox.NetNone {
						return bpfguard.KindSockCreate, ""
					}
					if landlock && !strings.HasSuffix(dst, ":8080") || landlock && tc.net.Mode != sandbox.NetVeth {
						// Landlock refuses TCP connects to ports outside
						// the allowlist before the cgroup hook runs.
						return "", ""
					}
					return kind, dst
				}
				udp := func(name, dst string) attack {
					a := attack{name: name, probe: netnstest.Probe{Kind: netnstest.SendTo, Addr: dst}, event: bpfguard.KindSendmsg4, dst: dst}
					if tc.net.Mode == sandbox.NetNone {
						a.event, a.dst = bpfguard.KindSockCreate, ""
					}
					return a
				}
				deny := func(name, dst string) attack {
					k, d := see(bpfguard.KindConnect4, dst)
					return attack{name: name, probe: tcp(dst), event: k, dst: d}
				}
				deny6 := func(name, dst string) attack {
					k, d := see(bpfguard.KindConnect6, dst)
					return attack{name: name, probe: tcp(dst), event: k, dst: d}
				}
				attacks := []attack{
					deny("internal network", backOffice+":8080"),
					deny("internal host", otherHost+":8080"),
					deny("internal gateway", gateway+":8080"),
					deny("external address", external),
					deny6("external ipv6 address", "[2001:db8::1]:443"),
					{name: "host loopback", probe: tcp("127.0.0.1:" + hostPort)},
					// Landlock has no UDP rules: here the cgroup programs
					// are the first to refuse, in both passes.
					udp("udp to internal host", otherHost+":5353"),
					udp("dns query to an external resolver", "192.0.2.53:53"),
					{name: "dns lookup", probe: dns},
					{name: "raw socket", probe: netnstest.Probe{Kind: netnstest.Raw}},
					{name: "packet socket", probe: netnstest.Probe{Kind: netnstest.Packet}},
				}
				if tc.net.Mode == sandbox.NetVeth {
					attacks[0] = attack{name: "allowlisted back office", probe: tcp(backOffice + ":8080"), allowed: true}
					attacks = append(attacks, deny("back office other port", backOffice+":8081"))
				}
				if tc.net.Mode == sandbox.NetNone {
					attacks[5].event = bpfguard.KindSockCreate // host loopback
				}
				var probes []netnstest.Probe
				wantEvents := 0
				for _, a := range attacks {
					if a.allowed {
						a.probe.Timeout = 5 * time.Second // a loaded machine must not fail what is allowed
					}
					if a.event != "" {
						wantEvents++
					}
					probes = append(probes, a.probe)
				}
				start := time.Now()
				rep, pid := run(t, e, tc.name, uint32(47101+i), tc.net, landlock, probes)
				t.Logf("%s: %d attacks in a runc sandbox in %v", tc.name, len(attacks), time.Since(start).Round(time.Millisecond))
				// Events arrive asynchronously.
				evs := e.events.of(pid)
				for deadline := time.Now().Add(5 * time.Second); len(evs) < wantEvents && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
					evs = e.events.of(pid)
				}
				for j, a := range attacks {
					r := rep.Results[j]
					t.Run(a.name, func(t *testing.T) {
						if r.OK() != a.allowed {
							t.Fatalf("%s %s: ok=%v (%s), want ok=%v", r.Probe.Kind, r.Probe.Addr, r.OK(), r.Err, a.allowed)
						}
						t.Logf("%s %s: %s", r.Probe.Kind, r.Probe.Addr, map[bool]string{true: "connected", false: "refused: " + r.Err}[r.OK()])
						if a.event == "" {
							return
						}
						for _, ev := range evs {
							if ev.Kind == a.event && ev.Compartment == tc.name && (a.dst == "" || netip.AddrPortFrom(ev.Addr, ev.Port).String() == a.dst) {
								return
							}
						}
						t.Errorf("no %s event for %s from pid %d; events: %v", a.event, a.dst, pid, evs)
					})
				}
			})
		}
	}
	if n := hostHits.Load(); n != 0 {
		t.Errorf("the host's loopback service was reached %d times", n)
	}
}

// TestAttachDetachTime measures what the network layers add to a
// compartment's start and stop (median of 11, runc itself excluded).
func TestAttachDetachTime(t *testing.T) {
	e := newEnv(t)
	for _, n := range []sandbox.Network{
		{Mode: sandbox.NetNone},
		{Mode: sandbox.NetLoopback},
		{Mode: sandbox.NetVeth, Address: netip.MustParsePrefix(insideAddr),
			Allow: []sandbox.Endpoint{{Prefix: netip.MustParsePrefix(backOffice + "/32"), Port: 8080}}},
	} {
		var times []time.Duration
		for i := 0; i < 11; i++ {
			nsName := "e2st-timed-" + string(n.Mode)
			if out, err := exec.Command("ip", "netns", "add", nsName).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			cg, err := os.MkdirTemp("/sys/fs/cgroup/unified", "e2st-timed-")
			if err != nil {
				t.Fatal(err)
			}
			at := sandbox.NetAttachment{Spec: sandbox.Spec{Name: "timed", Network: n}, NetnsPath: "/run/netns/" + nsName, CgroupV2: cg}
			start := time.Now()
			err = e.runc.Net.Attach(context.Background(), at)
			if err == nil {
				err = e.runc.Net.Detach(at)
			}
			times = append(times, time.Since(start))
			exec.Command("ip", "netns", "del", nsName).Run()
			os.Remove(cg)
			if err != nil {
				t.Fatal(err)
			}
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		t.Logf("%s: Attach+Detach median %v (min %v, max %v)", n.Mode, times[len(times)/2].Round(time.Microsecond), times[0].Round(time.Microsecond), times[len(times)-1].Round(time.Microsecond))
	}
}

func TestDetachWithoutAttach(t *testing.T) {
	a := New(netns.New(netns.Config{Prefix: "e2st-never-"}), nil, nil)
	if err := a.Detach(sandbox.NetAttachment{NetnsPath: "/nonexistent"}); err != nil {
		t.Fatal(err)
	}
}

// TestOutsideServesHandedListener: the outside compartment, with no
// interface and no right to create an IP socket, still serves on the
// listening socket the supervisor bound and handed over.
func TestOutsideServesHandedListener(t *testing.T) {
	e := newEnv(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.TCPListener).File()
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make(chan string, 1)
	go func() {
		for i := 0; i < 200; i++ {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				time.Sleep(25 * time.Millisecond)
				continue
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 2)
			n, _ := c.Read(b)
			c.Close()
			got <- string(b[:n])
			return
		}
		got <- ""
	}()
	rep, _ := run(t, e, "outside", 47110, sandbox.Network{Mode: sandbox.NetNone}, true, []netnstest.Probe{
		{Kind: netnstest.Accept, Timeout: 5 * time.Second},
		{Kind: netnstest.Inet},
	}, f)
	if r := rep.Results[0]; !r.OK() {
		t.Errorf("accept on the handed listener: %s", r.Err)
	}
	if r := rep.Results[1]; r.OK() || r.Errno != "EPERM" {
		t.Errorf("new IP socket: ok=%v %s, want EPERM", r.OK(), r.Err)
	}
	if s := <-got; s != "ok" {
		t.Errorf("client got %q from outside, want ok", s)
	}
}
