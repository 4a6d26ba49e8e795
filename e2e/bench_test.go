package e2e

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/purchasing"
	"github.com/e2sgate/e2sgate/outside"
)

// BenchmarkFullPath compares, in one run, the full appliance path (client →
// outside → gate agent → purchasing → back, each its own process, TLS 1.3)
// with the same purchasing handler served by one plain Go HTTPS process.
// It reports requests/s and p50/p99 for both and their ratio.
func BenchmarkFullPath(b *testing.B) {
	// Unless told otherwise, outside's budget at the gate (500 calls a
	// second by default) is raised so that it does not cap the measurement.
	a := startAppliance(b, cmp.Or(os.Getenv("E2S_BENCH_CONFIG"), "gate_limits:\n  per_second: 100000\n  burst: 100000\n"))

	h, err := purchasing.New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	plain := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		call, err := outside.CallFromRequest(r, body)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		call.Script = "basket"
		resp, _ := h.Handle(r.Context(), call)
		outside.WriteResponse(w, resp)
	}))
	plain.EnableHTTP2 = false
	plain.StartTLS()
	defer plain.Close()
	plainClient := plain.Client()
	plainClient.Transport.(*http.Transport).MaxIdleConnsPerHost = 64

	body := []byte(basket)
	run := func(client *http.Client, url string) (float64, []time.Duration) {
		const workers = 4
		lat := make([][]time.Duration, workers)
		var wg sync.WaitGroup
		start := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < b.N; i += workers {
					t0 := time.Now()
					req, _ := http.NewRequestWithContext(context.Background(), "POST", url, bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					lat[w] = append(lat[w], time.Since(t0))
				}
			}()
		}
		wg.Wait()
		rps := float64(b.N) / time.Since(start).Seconds()
		all := slices.Concat(lat...)
		slices.Sort(all)
		return rps, all
	}
	// Warm both up (TLS sessions, connections).
	warm := func(c *http.Client, url string) {
		for range 20 {
			req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if r, err := c.Do(req); err == nil {
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
			}
		}
	}
	warm(a.client, a.URL+"/cgi-bin/purchasing/basket")
	warm(plainClient, plain.URL+"/cgi-bin/purchasing/basket")

	st, err := a.status()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	gateCPU0 := processCPU(b, st.GatePid)
	gateRPS, gateLat := run(a.client, a.URL+"/cgi-bin/purchasing/basket")
	gateCPU := processCPU(b, st.GatePid) - gateCPU0
	plainRPS, plainLat := run(plainClient, plain.URL+"/cgi-bin/purchasing/basket")
	b.StopTimer()

	// At one connection: the full path, a static file through the same
	// web front, and a call the gate refuses (no such script).
	one := func(method, path string, want int) float64 {
		var lat []time.Duration
		for range max(b.N/10, 50) {
			var rb io.Reader
			if method == "POST" {
				rb = bytes.NewReader(body)
			}
			req, _ := http.NewRequest(method, a.URL+path, rb)
			req.Header.Set("Content-Type", "application/json")
			t0 := time.Now()
			resp, err := a.client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				b.Fatalf("%s %s: status %d, want %d", method, path, resp.StatusCode, want)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		return float64(lat[len(lat)/2].Nanoseconds()) / 1e3
	}
	a.client.Transport.(*http.Transport).MaxIdleConnsPerHost = 1
	fullOne := one("POST", "/cgi-bin/purchasing/basket", 200)
	staticOne := one("GET", "/", 200)
	refusedOne := one("POST", "/cgi-bin/purchasing/no-such-script", 404)

	// kill -9 of purchasing → the next request served.
	restart := a.killServed(b, "purchasing", "/cgi-bin/purchasing/basket", body)
	if len(gateLat) == 0 || len(plainLat) == 0 {
		b.Fatal("no successful requests")
	}
	p := func(l []time.Duration, q int) float64 { return float64(l[len(l)*q/100].Microseconds()) }
	b.ReportMetric(gateRPS, "appliance-req/s")
	b.ReportMetric(plainRPS, "plain-req/s")
	b.ReportMetric(plainRPS/gateRPS, "plain/appliance")
	b.ReportMetric(p(gateLat, 50), "appliance-p50-µs")
	b.ReportMetric(p(gateLat, 99), "appliance-p99-µs")
	b.ReportMetric(p(plainLat, 50), "plain-p50-µs")
	b.ReportMetric(p(plainLat, 99), "plain-p99-µs")
	b.ReportMetric(gateRPS/plainRPS, "appliance/plain")
	b.ReportMetric(fullOne, "one-conn-full-p50-µs")
	b.ReportMetric(staticOne, "one-conn-static-p50-µs")
	b.ReportMetric(fullOne/staticOne, "full/static")
	b.ReportMetric(refusedOne, "one-conn-refused-p50-µs")
	b.ReportMetric(float64(gateCPU.Microseconds())/float64(len(gateLat)), "gate-cpu-µs/call")
	b.ReportMetric(float64(restart.Milliseconds()), "kill-purchasing-served-ms")
}

// processCPU is the user and system CPU time pid has used so far.
func processCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): utime is the
	// 14th field of the line, stime the 15th, in clock ticks (100 a second).
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+stime) * 10 * time.Millisecond
}

// killServed kills name with SIGKILL and returns the time until path is
// served (200) again.
func (a *appliance) killServed(b *testing.B, name, path string, body []byte) time.Duration {
	st, err := a.status()
	if err != nil {
		b.Fatal(err)
	}
	pid := st.Compartments[name].Pid
	t0 := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		b.Fatal(err)
	}
	for time.Since(t0) < 30*time.Second {
		req, _ := http.NewRequest("POST", a.URL+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := a.client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(t0)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	b.Fatalf("%s not served within 30s of kill -9", name)
	return 0
}
