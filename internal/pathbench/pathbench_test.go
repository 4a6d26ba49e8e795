package pathbench

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	_ "github.com/e2sgate/e2sgate/compartments/builtins" // every compartment declared, for its label
	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/purchasing"
	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/outside"
	"github.com/e2sgate/e2sgate/outside/compartment"
)

// BenchmarkGatePath is the profiling rig of make profile: the full path's
// code — HTTPS client → outside's web front → gRPC over a unix socket →
// gate agent (limits, decision, filters, durable audit record) → gRPC over
// a unix socket → purchasing's basket handler and back — in one process,
// each part's goroutines labelled process=client|outside|gate|purchasing,
// so `go tool pprof -tagfocus process=gate` shows one part's share. The
// real appliance adds process boundaries, sandboxes and CPU quotas; its
// numbers are BenchmarkFullPath's (e2e).
func BenchmarkGatePath(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	labelled := func(process string, f func()) {
		pprof.Do(ctx, pprof.Labels("process", process), func(context.Context) { f() })
	}

	var audit *auditlog.Log
	var err error
	labelled("gate", func() { audit, err = auditlog.OpenWith(filepath.Join(dir, "audit.log"), auditlog.Options{Log: log}) })
	if err != nil {
		b.Fatal(err)
	}
	defer audit.Close()
	labels := map[string]string{}
	for _, m := range manifest.All() {
		labels[m.Name] = m.Label
	}
	set, err := gateagent.LoadPolicySet(ctx, "", slices.Collect(maps.Keys(labels)))
	if err != nil {
		b.Fatal(err)
	}
	a := gateagent.New(log, audit, labels, set)
	// The rig measures the path's cost, not outside's budget (500 calls a
	// second by default), which a fast enough run would exhaust.
	a.SetLimits(gateagent.Limits{PerSecond: 1e6, Burst: 1 << 20})
	a.WaitCompiled()

	// Purchasing, served as its plugin serves it.
	var h *purchasing.Handler
	labelled("purchasing", func() { h, err = purchasing.New(log, nil, filepath.Join(dir, "purchasing")) })
	if err != nil {
		b.Fatal(err)
	}
	plugSock := filepath.Join(dir, "purchasing.sock")
	pl, err := net.Listen("unix", plugSock)
	if err != nil {
		b.Fatal(err)
	}
	ps := grpc.NewServer(append(protocol.ServerOptions(), grpc.MaxRecvMsgSize(protocol.MaxMessage), grpc.MaxSendMsgSize(protocol.MaxMessage))...)
	(&protocol.CompartmentPlugin{Impl: h}).GRPCServer(nil, ps)
	labelled("purchasing", func() { go ps.Serve(pl) })
	defer ps.Stop()

	// The gate agent: outside's gate listener, and its client to purchasing.
	gateSock := filepath.Join(dir, "gate.sock")
	gl, err := net.Listen("unix", gateSock)
	if err != nil {
		b.Fatal(err)
	}
	var gs *grpc.Server
	var target protocol.Compartment
	labelled("gate", func() {
		gs = a.GateServer("outside", protocol.MaxMessage) // its stream workers start here
		go gs.Serve(gl)
		conn, err := grpc.NewClient("unix:"+plugSock, append(protocol.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(protocol.MaxMessage), grpc.MaxCallSendMsgSize(protocol.MaxMessage)))...)
		if err != nil {
			b.Fatal(err)
		}
		raw, err := (&protocol.CompartmentPlugin{}).GRPCClient(ctx, nil, conn)
		if err != nil {
			b.Fatal(err)
		}
		target = raw.(protocol.Compartment)
	})
	defer gs.Stop()
	a.Attach("purchasing", target)

	// Outside's web front.
	var gate *protocol.Gate
	var web *outside.Server
	labelled("outside", func() {
		if gate, err = protocol.DialGate(gateSock); err == nil {
			web, err = outside.New(log, compartment.DefaultConfig(), gate, filepath.Join(dir, "outside"))
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer gate.Close()
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	labelled("outside", func() { go web.Serve(wl) })
	defer wl.Close()

	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // the rig's own self-signed front
		MaxIdleConnsPerHost: 64,
	}}
	url := "https://" + wl.Addr().String() + "/cgi-bin/purchasing/basket"
	body := []byte(`{"items":[{"sku":"LIC-STD","qty":2},{"sku":"DOC-SPEC","qty":1}]}`)
	post := func() error {
		req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return &statusError{resp.StatusCode, resp.Header.Get("X-E2S-Reason")}
		}
		return nil
	}
	for range 20 {
		if err := post(); err != nil {
			b.Fatal(err)
		}
	}

	// make profile: CPU of the timed calls only, allocations before and
	// after them (pprof -diff_base).
	profDir := os.Getenv("E2S_PROFILE_DIR")
	if profDir != "" {
		writeProfile(b, filepath.Join(profDir, "gatepath.allocs-base.pprof"), "allocs")
		f, err := os.Create(filepath.Join(profDir, "gatepath.cpu.pprof"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
	}

	const workers = 4
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	labelled("client", func() {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < b.N; i += workers {
					if err := post(); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	if profDir != "" {
		pprof.StopCPUProfile()
		writeProfile(b, filepath.Join(profDir, "gatepath.allocs.pprof"), "allocs")
	}
}

func writeProfile(b *testing.B, path, name string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

type statusError struct {
	status int
	reason string
}

func (e *statusError) Error() string { return http.StatusText(e.status) + " " + e.reason }
