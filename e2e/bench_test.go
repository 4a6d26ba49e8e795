package e2e

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
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
	a := startAppliance(b, os.Getenv("E2S_BENCH_CONFIG"))

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

	b.ResetTimer()
	gateRPS, gateLat := run(a.client, a.URL+"/cgi-bin/purchasing/basket")
	plainRPS, plainLat := run(plainClient, plain.URL+"/cgi-bin/purchasing/basket")
	b.StopTimer()
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
}
