package sandbox

import (
	"bufio"
	"context"
	"io"
	"slices"
	"testing"
	"time"
)

// startToFirstLine starts s and returns how long until the program's first
// stdout line arrived (it prints it right after landlock.RestrictSelf, so
// this is "confined and running"), plus the process.
func startToFirstLine(b *testing.B, r Runtime, s Spec) (time.Duration, Process) {
	pr, pw := io.Pipe()
	s.Stdout = pw
	t0 := time.Now()
	p, err := r.Start(context.Background(), s)
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(pr)
	if !sc.Scan() {
		b.Fatalf("no output: %v", sc.Err())
	}
	d := time.Since(t0)
	go func() { io.Copy(io.Discard, pr) }()
	go func() { p.Wait(); pw.Close() }()
	return d, p
}

func reportMedian(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	med := ds[len(ds)/2]
	b.ReportMetric(float64(med.Microseconds())/1000, name+"-median-ms")
	b.ReportMetric(float64(len(ds)), name+"-samples")
	b.Logf("%s: median %v over %d (min %v, max %v)", name, med, len(ds), ds[0], ds[len(ds)-1])
}

// BenchmarkStart: from Start to the confined program's first line. Run with
// -benchtime=10x (or more) for the issue note's median of >= 10.
func BenchmarkStart(b *testing.B) {
	r := newTestRunc(b)
	s := probeSpec(b, "purchasing", probeUID, "sleep")
	// Build the image once: the supervisor does it at start, not per
	// compartment start.
	p0, err := r.Start(context.Background(), s)
	if err != nil {
		b.Fatal(err)
	}
	p0.Close()
	var ds []time.Duration
	b.ResetTimer()
	for i := 0; i < max(b.N, 10); i++ {
		d, p := startToFirstLine(b, r, s)
		ds = append(ds, d)
		b.StopTimer()
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportMedian(b, "start", ds)
}

// BenchmarkRestart: what the supervisor does when a compartment died: Close
// the dead one (container, netns, cgroups), Start it again, until the new
// program's first line.
func BenchmarkRestart(b *testing.B) { benchRestart(b, newTestRunc(b)) }

// BenchmarkRestartContainerd: BenchmarkRestart through a containerd daemon
// the benchmark starts itself.
func BenchmarkRestartContainerd(b *testing.B) {
	sock := startContainerdB(b)
	c := &Containerd{Runc: *newTestRunc(b), Address: sock, Namespace: "e2sgate-bench"}
	defer c.Close()
	benchRestart(b, c)
}

func benchRestart(b *testing.B, r Runtime) {
	s := probeSpec(b, "payment", probeUID, "sleep")
	_, p := startToFirstLine(b, r, s)
	var ds, closes, starts []time.Duration
	b.ResetTimer()
	for i := 0; i < max(b.N, 10); i++ {
		b.StopTimer()
		p.Signal(syscallKill)
		p.Wait()
		b.StartTimer()
		t0 := time.Now()
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
		closed := time.Since(t0)
		d, np := startToFirstLine(b, r, s)
		ds = append(ds, time.Since(t0))
		closes = append(closes, closed)
		starts = append(starts, d)
		p = np
	}
	b.StopTimer()
	p.Close()
	reportMedian(b, "restart", ds)
	reportMedian(b, "restart-close", closes)
	reportMedian(b, "restart-start", starts)
}

// BenchmarkStartContainerd: BenchmarkStart through a containerd daemon the
// benchmark starts itself.
func BenchmarkStartContainerd(b *testing.B) {
	sock := startContainerdB(b)
	c := &Containerd{Runc: *newTestRunc(b), Address: sock, Namespace: "e2sgate-bench"}
	defer c.Close()
	s := probeSpec(b, "purchasing", probeUID, "sleep")
	var ds []time.Duration
	for i := 0; i < max(b.N, 10); i++ {
		d, p := startToFirstLine(b, c, s)
		ds = append(ds, d)
		b.StopTimer()
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportMedian(b, "start", ds)
}
