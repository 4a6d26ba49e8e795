// Command benchtable reads the output of make bench's `go test -bench`
// runs on stdin and prints one table: each figure of the gate path's cost
// with the baseline it is measured against in the same run, their ratio,
// and the target. A figure whose benchmark did not run is shown as such.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// metrics maps "Benchmark/sub unit" to its value (the last run wins).
type metrics map[string]float64

func parse(r io.Reader) (metrics, error) {
	m := metrics{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 { // the -GOMAXPROCS suffix
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[name+" "+f[i+1]] = v
			}
		}
	}
	return m, sc.Err()
}

type row struct {
	figure         string
	value, against string // metric keys; against empty: no baseline, an absolute figure
	unit           string
	ratio          bool // print value/against
	target         string
}

var rows = []row{
	{"full path / plain Go process, req/s", "BenchmarkFullPath appliance-req/s", "BenchmarkFullPath plain-req/s", "req/s", true, "≥ 0.35"},
	{"full path p50 / static file p50, 1 connection", "BenchmarkFullPath one-conn-full-p50-µs", "BenchmarkFullPath one-conn-static-p50-µs", "µs", true, "≤ 3×"},
	{"a call the gate refuses, p50, 1 connection", "BenchmarkFullPath one-conn-refused-p50-µs", "BenchmarkFullPath one-conn-static-p50-µs", "µs", true, "≤ 350 µs"},
	{"gate decision, 1000 registrations, p99 (table / full query)", "BenchmarkDecision/table p99-µs", "BenchmarkDecision/full-query p99-µs", "µs", true, "≤ 50 µs"},
	{"gate decision allocations (table / full query)", "BenchmarkDecision/table allocs/op", "BenchmarkDecision/full-query allocs/op", "allocs", true, "≤ 40"},
	{"gate agent CPU per forwarded call", "BenchmarkFullPath gate-cpu-µs/call", "", "µs", false, "≤ 150 µs"},
	{"kill -9 of purchasing → next request served", "BenchmarkFullPath kill-purchasing-served-ms", "", "ms", false, "≤ 150 ms"},
	{"compartment sandbox start (runc)", "BenchmarkStart start-median-ms", "", "ms", false, "≤ 50 ms"},
}

func main() {
	m, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable: read benchmark output:", err)
		os.Exit(1)
	}
	fmt.Println("| figure | measured | baseline (same run) | ratio | target |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	for _, r := range rows {
		v, ok := m[r.value]
		if !ok {
			fmt.Printf("| %s | not run | | | %s |\n", r.figure, r.target)
			continue
		}
		base, ratio := "", ""
		if b, ok := m[r.against]; ok && r.against != "" {
			base = fmt.Sprintf("%.4g %s", b, r.unit)
			if r.ratio && b != 0 {
				ratio = fmt.Sprintf("%.3g", v/b)
			}
		}
		fmt.Printf("| %s | %.4g %s | %s | %s | %s |\n", r.figure, v, r.unit, base, ratio, r.target)
	}
}
