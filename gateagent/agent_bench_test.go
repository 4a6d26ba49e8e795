package gateagent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/policies"
)

// registryWith returns a registry of n scripts (plus the embedded ones).
func registryWith(_ testing.TB, n int) []byte {
	base, _ := policies.Default.ReadFile("registry.yaml")
	var sb strings.Builder
	sb.Write(base)
	for i := range n {
		fmt.Fprintf(&sb, "  purchasing/s%04d:\n    target: purchasing\n    handler: s%04d\n    methods: [POST]\n    content_types: [application/json]\n    max_body: 65536\n    callers: [outside]\n    clearance: unclassified\n    filters: [json]\n", i, i)
	}
	return []byte(sb.String())
}

// BenchmarkDecision is the gate decision alone — registry lookup, policy,
// filter chain — with 1000 registrations; p50/p99 per decision. "table"
// is the agent as it runs (the activation's decision table, table.go);
// "full-query" is its baseline in the same run, the prepared Rego query
// per call as before the table.
func BenchmarkDecision(b *testing.B) {
	ctx := context.Background()
	reg, err := ParseRegistry(registryWith(b, 1000), "registry.yaml", comps)
	if err != nil {
		b.Fatal(err)
	}
	pol, err := LoadPolicy(ctx, policies.Default)
	if err != nil {
		b.Fatal(err)
	}
	a := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, labels, &PolicySet{Registry: reg, Policy: pol})
	a.compiling.Wait() // the decision table, compiled at activation
	if a.set.Load().table == nil {
		b.Fatal("no decision table")
	}
	full := New(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, labels, &PolicySet{Registry: reg, Policy: pol})
	full.compiling.Wait()
	full.set.Store(&activeSet{PolicySet: full.set.Load().PolicySet}) // no table: every call by the query
	for _, c := range []struct {
		name  string
		agent *Agent
	}{{"table", a}, {"full-query", full}} {
		b.Run(c.name, func(b *testing.B) {
			call := &callpb.Call{Script: "purchasing/s0500", Method: "POST", Caller: "outside",
				Meta: map[string]string{"CONTENT_TYPE": "application/json"}, Body: []byte(`{"items":[{"sku":"LIC-STD","qty":2}]}`)}
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				var rec auditlog.Record
				_, d, denied := c.agent.decide(ctx, call, &rec)
				lat = append(lat, time.Since(t0))
				if denied != nil || !d.Allow {
					b.Fatalf("denied: %+v", denied)
				}
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
