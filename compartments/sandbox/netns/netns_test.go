package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/internal/testutil/netnstest"
)

func TestMain(m *testing.M) {
	netnstest.Main()
	os.Exit(m.Run())
}

// testHost returns a Host whose namespaces carry a random prefix, so that
// parallel runs never meet, and removes whatever the test leaves.
func testHost(t *testing.T) *Host {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("netns kernel tests need root (they run as root in CI)")
	}
	b := make([]byte, 3)
	rand.Read(b)
	h := New(Config{Prefix: "e2st" + hex.EncodeToString(b) + "-", Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
		assertGone(t, h.cfg.Prefix)
	})
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// assertGone fails if a namespace with the prefix is still listed.
func assertGone(t *testing.T, prefix string) {
	t.Helper()
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}

// listen opens a TCP listener inside ns that answers every connection with
// "hello" and is closed with the test.
func listen(t *testing.T, ns *Namespace, addr string) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.Name(), err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Endpoints of the test's internal network, all on the internal bridge.
const (
	insideAddr  = "10.77.0.2/24"
	backOffice  = "10.77.0.10" // allowed on port 8080 only
	acquirer    = "10.77.0.11" // allowed on any port
	otherHost   = "10.77.0.12" // not allowed at all
	gatewayAddr = "10.77.0.1"  // the bridge itself
	external    = "203.0.113.10:443"
)

// insideNetwork is the inside compartment's network in these tests.
func insideNetwork() sandbox.Network {
	return sandbox.Network{
		Mode:    sandbox.NetVeth,
		Address: netip.MustParsePrefix(insideAddr),
		Allow: []sandbox.Endpoint{
			{Prefix: netip.MustParsePrefix(backOffice + "/32"), Port: 8080},
			{Prefix: netip.MustParsePrefix(acquirer + "/32")},
		},
	}
}

// internalEndpoints puts the test hosts on the internal bridge and starts
// their listeners.
func internalEndpoints(t *testing.T, h *Host) *Namespace {
	t.Helper()
	in, err := h.Internal()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{gatewayAddr, backOffice, acquirer, otherHost} {
		ip(t, "-n", in.Name(), "addr", "add", a+"/24", "dev", h.cfg.Bridge)
	}
	for _, a := range []string{backOffice + ":8080", backOffice + ":8081", acquirer + ":9000", otherHost + ":8080", gatewayAddr + ":8080"} {
		listen(t, in, a)
	}
	return in
}

// TestRulesetKernel installs each golden ruleset in a real namespace and
// checks that the kernel holds what nft(8) would print for it.
func TestRulesetKernel(t *testing.T) {
	h := testHost(t)
	for _, tc := range rulesetCases {
		t.Run(tc.name, func(t *testing.T) {
			ns, err := h.Setup(tc.name, tc.net)
			if err != nil {
				t.Fatal(err)
			}
			defer ns.Close()
			out, err := exec.Command("ip", "netns", "exec", ns.Name(), "nft", "list", "ruleset").CombinedOutput()
			if err != nil {
				t.Fatalf("nft list ruleset: %v\n%s", err, out)
			}
			s := string(out)
			for _, want := range []string{"table inet e2s", "policy drop", "ct state established,related accept"} {
				if !strings.Contains(s, want) {
					t.Errorf("ruleset lacks %q:\n%s", want, s)
				}
			}
			if tc.name == "inside" {
				for _, want := range []string{"ip daddr 10.77.0.10 tcp dport 5432 accept", "ip daddr 10.77.1.0/24 accept", "ip6 daddr 2001:db8::10 udp dport 443 accept", "ip daddr 10.77.2.0/24 udp dport 53 accept"} {
					if !strings.Contains(s, want) {
						t.Errorf("ruleset lacks %q:\n%s", want, s)
					}
				}
			}
		})
	}
}

// TestModes checks each mode's interfaces.
func TestModes(t *testing.T) {
	h := testHost(t)
	for _, tc := range []struct {
		mode       sandbox.NetMode
		wantLoUp   bool
		wantEth0   bool
		wantRoutes string
	}{
		{sandbox.NetNone, false, false, ""},
		{sandbox.NetLoopback, true, false, ""},
		{sandbox.NetVeth, true, true, "default via 10.77.0.1 dev eth0"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			n := sandbox.Network{Mode: tc.mode}
			if tc.mode == sandbox.NetVeth {
				n.Address = netip.MustParsePrefix(insideAddr)
			}
			ns, err := h.Setup("c-"+string(tc.mode), n)
			if err != nil {
				t.Fatal(err)
			}
			links := ip(t, "-n", ns.Name(), "-o", "link")
			if up := strings.Contains(links, "1: lo: <LOOPBACK,UP"); up != tc.wantLoUp {
				t.Errorf("lo up = %v, want %v:\n%s", up, tc.wantLoUp, links)
			}
			if got := strings.Count(links, "\n"); got != map[bool]int{false: 1, true: 2}[tc.wantEth0] {
				t.Errorf("%d links, want lo%s:\n%s", got, map[bool]string{true: " and eth0"}[tc.wantEth0], links)
			}
			if routes := ip(t, "-n", ns.Name(), "route"); !strings.Contains(routes, tc.wantRoutes) {
				t.Errorf("routes %q lack %q", routes, tc.wantRoutes)
			}
			if err := ns.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(ns.Path()); !os.IsNotExist(err) {
				t.Errorf("%s still there after Close: %v", ns.Path(), err)
			}
			if tc.wantEth0 {
				in, _ := h.Internal()
				if links := ip(t, "-n", in.Name(), "-o", "link"); strings.Contains(links, "vh-") {
					t.Errorf("host end of veth left after Close:\n%s", links)
				}
			}
		})
	}
}

func TestSetupRejects(t *testing.T) {
	h := New(Config{Prefix: "e2st-never-"})
	for _, tc := range []struct {
		name string
		net  sandbox.Network
	}{
		{"unknown mode", sandbox.Network{Mode: "wifi"}},
		{"veth without address", sandbox.Network{Mode: sandbox.NetVeth}},
		{"veth host address", sandbox.Network{Mode: sandbox.NetVeth, Address: netip.MustParsePrefix("10.0.0.1/32")}},
		{"invalid endpoint", sandbox.Network{Mode: sandbox.NetLoopback, Allow: []sandbox.Endpoint{{Port: 80}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := h.Setup("x", tc.net); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := h.Setup("../x", sandbox.Network{Mode: sandbox.NetNone}); err == nil {
		t.Fatal("path in name accepted")
	}
}

// probe runs the attacks from a child process inside ns and checks each
// outcome: allowed ones connect, the rest fail.
func probe(t *testing.T, ns *Namespace, cases []attack) {
	t.Helper()
	var probes []netnstest.Probe
	for _, c := range cases {
		if c.allowed {
			c.probe.Timeout = 5 * time.Second // a loaded machine must not fail what is allowed
		}
		probes = append(probes, c.probe)
	}
	start := time.Now()
	rep := netnstest.Run(t, netnstest.Options{Netns: ns.Path()}, probes...)
	t.Logf("%d probes from %s in %v", len(probes), ns.Name(), time.Since(start).Round(time.Millisecond))
	for i, r := range rep.Results {
		c := cases[i]
		t.Run(c.name, func(t *testing.T) {
			if r.OK() != c.allowed {
				t.Errorf("%s %s: ok=%v (err %q), want ok=%v", r.Probe.Kind, r.Probe.Addr, r.OK(), r.Err, c.allowed)
			}
			if !c.allowed && c.errno != "" && r.Errno != c.errno {
				t.Errorf("%s %s: errno %q (%s), want %s", r.Probe.Kind, r.Probe.Addr, r.Errno, r.Err, c.errno)
			}
		})
	}
}

type attack struct {
	name    string
	probe   netnstest.Probe
	allowed bool
	errno   string // expected errno of a refused attempt; "" any
}

func tcp(addr string) netnstest.Probe {
	return netnstest.Probe{Kind: netnstest.TCP, Addr: addr, Timeout: 400 * time.Millisecond}
}

// TestInsideNetwork is the inside compartment's network attack: from its
// namespace, only the allowlisted internal endpoints answer; other internal
// hosts and ports, the bridge itself, external addresses and DNS do not;
// and nothing on the internal network can connect in.
func TestInsideNetwork(t *testing.T) {
	h := testHost(t)
	in := internalEndpoints(t, h)
	ns, err := h.Setup("inside", insideNetwork())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	listen(t, ns, "10.77.0.2:7000")
	listen(t, ns, "127.0.0.1:7001")

	probe(t, ns, []attack{
		{"allowed back office port", tcp(backOffice + ":8080"), true, ""},
		{"allowed acquirer any port", tcp(acquirer + ":9000"), true, ""},
		{"own loopback", tcp("127.0.0.1:7001"), true, ""},
		{"back office other port", tcp(backOffice + ":8081"), false, ""},
		{"non-allowlisted internal host", tcp(otherHost + ":8080"), false, ""},
		{"internal network gateway", tcp(gatewayAddr + ":8080"), false, ""},
		{"external address", tcp(external), false, ""},
		// An nftables output drop of a local datagram fails the send.
		{"udp to non-allowlisted host", netnstest.Probe{Kind: netnstest.SendTo, Addr: otherHost + ":53"}, false, "EPERM"},
		{"dns lookup", netnstest.Probe{Kind: netnstest.DNS, Addr: "example.com", Timeout: 500 * time.Millisecond}, false, ""},
	})

	// Inbound: the internal network cannot open a connection to inside.
	var c net.Conn
	err = in.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", "10.77.0.2:7000", 400*time.Millisecond)
		return err
	})
	if err == nil {
		c.Close()
		t.Error("internal network connected in to the inside compartment")
	}
}

// TestInsideUDPDropped shows that a datagram to a non-allowlisted internal
// host never arrives, while one to an allowlisted port does.
func TestInsideUDPDropped(t *testing.T) {
	h := testHost(t)
	in := internalEndpoints(t, h)
	ns, err := h.Setup("inside", insideNetwork())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	recv := func(addr string) <-chan string {
		var pc net.PacketConn
		if err := in.Do(func() (err error) {
			pc, err = net.ListenPacket("udp", addr)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			defer pc.Close()
			pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			b := make([]byte, 64)
			n, _, err := pc.ReadFrom(b)
			if err != nil {
				got <- ""
				return
			}
			got <- string(b[:n])
		}()
		return got
	}
	allowed, denied := recv(backOffice+":8080"), recv(otherHost+":5353")
	netnstest.Run(t, netnstest.Options{Netns: ns.Path()},
		netnstest.Probe{Kind: netnstest.SendTo, Addr: backOffice + ":8080"},
		netnstest.Probe{Kind: netnstest.SendTo, Addr: otherHost + ":5353"})
	if got := <-allowed; got != "probe" {
		t.Errorf("allowlisted datagram: got %q, want probe", got)
	}
	if got := <-denied; got != "" {
		t.Errorf("datagram to non-allowlisted host arrived: %q", got)
	}
}

// TestFunctionCompartmentNetwork is the attack of a function compartment
// (loopback only) and of outside (no interface at all): nothing beyond the
// namespace is reachable, and DNS fails.
func TestFunctionCompartmentNetwork(t *testing.T) {
	h := testHost(t)
	internalEndpoints(t, h)
	for _, tc := range []struct {
		name string
		mode sandbox.NetMode
	}{
		{"purchasing", sandbox.NetLoopback},
		{"payment", sandbox.NetLoopback},
		{"keyhandler", sandbox.NetLoopback},
		{"outside", sandbox.NetNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, err := h.Setup(tc.name, sandbox.Network{Mode: tc.mode})
			if err != nil {
				t.Fatal(err)
			}
			defer ns.Close()
			ownLoopback := tc.mode == sandbox.NetLoopback
			if ownLoopback {
				listen(t, ns, "127.0.0.1:7001")
			}
			probe(t, ns, []attack{
				{"internal network", tcp(backOffice + ":8080"), false, "ENETUNREACH"},
				{"internal gateway", tcp(gatewayAddr + ":8080"), false, "ENETUNREACH"},
				{"external address", tcp(external), false, "ENETUNREACH"},
				{"own loopback", tcp("127.0.0.1:7001"), ownLoopback, map[bool]string{false: "ENETUNREACH"}[ownLoopback]},
				{"dns lookup", netnstest.Probe{Kind: netnstest.DNS, Addr: "example.com", Timeout: 500 * time.Millisecond}, false, ""},
			})
		})
	}
}

// TestHostLoopbackUnreachable starts a listener on the runner's (the
// host's) loopback and shows no compartment namespace reaches it.
func TestHostLoopbackUnreachable(t *testing.T) {
	h := testHost(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, n := range []sandbox.Network{{Mode: sandbox.NetNone}, {Mode: sandbox.NetLoopback}, insideNetwork()} {
		t.Run(string(n.Mode), func(t *testing.T) {
			ns, err := h.Setup("c-"+string(n.Mode), n)
			if err != nil {
				t.Fatal(err)
			}
			defer ns.Close()
			probe(t, ns, []attack{{fmt.Sprintf("host loopback %s", l.Addr()), tcp(l.Addr().String()), false, ""}})
		})
	}
}

// TestSetupTime measures setting a compartment's network up and down.
func TestSetupTime(t *testing.T) {
	h := testHost(t)
	for _, n := range []sandbox.Network{{Mode: sandbox.NetLoopback}, insideNetwork()} {
		var total time.Duration
		const rounds = 10
		for i := 0; i < rounds; i++ {
			start := time.Now()
			ns, err := h.Setup("timed", n)
			if err != nil {
				t.Fatal(err)
			}
			if err := ns.Close(); err != nil {
				t.Fatal(err)
			}
			total += time.Since(start)
		}
		t.Logf("%s: setup+close mean %v over %d", n.Mode, (total / rounds).Round(time.Microsecond), rounds)
	}
}

func TestHostLinkName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"inside", "vh-inside"},
		{"inside-abcdef", "vh-inside-abcdef"[:15]},
	} {
		got := hostLinkName(tc.in)
		if len(got) > 15 {
			t.Errorf("hostLinkName(%q) = %q, longer than 15", tc.in, got)
		}
		if len(tc.in) <= 12 && got != tc.want {
			t.Errorf("hostLinkName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if a, b := hostLinkName("compartment-one"), hostLinkName("compartment-two"); a == b {
		t.Errorf("long names collide: %q", a)
	}
}

// TestConfigureExisting configures a namespace someone else made (as the
// runc runtime does) and leaves it to its creator on Close.
func TestConfigureExisting(t *testing.T) {
	h := testHost(t)
	internalEndpoints(t, h)
	name := h.cfg.Prefix + "made-by-runtime"
	ip(t, "netns", "add", name)
	defer exec.Command("ip", "netns", "del", name).Run()
	ns, err := h.Configure("inside", "/run/netns/"+name, insideNetwork())
	if err != nil {
		t.Fatal(err)
	}
	probe(t, ns, []attack{
		{"allowed back office port", tcp(backOffice + ":8080"), true, ""},
		{"non-allowlisted internal host", tcp(otherHost + ":8080"), false, ""},
	})
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if links := ip(t, "-n", name, "-o", "link"); strings.Contains(links, "eth0") {
		t.Errorf("eth0 left after Close:\n%s", links)
	}
	if _, err := os.Stat("/run/netns/" + name); err != nil {
		t.Errorf("Close removed the creator's namespace: %v", err)
	}
}

func TestAvailable(t *testing.T) {
	h := testHost(t)
	start := time.Now()
	if err := h.Available(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Available in %v", time.Since(start).Round(time.Microsecond))
}
