package sandbox

import (
	"bufio"
	"context"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// BenchmarkStartVersusBaselineRunc: BenchmarkStart with the pinned runc and
// with each runc in $E2S_RUNC_BASELINE (paths separated by ':', e.g. a
// distribution's), starts alternating so all see the same machine load;
// reports each median and pinned/baseline-N, for the time to the first
// line and for the CPU time runc used (runc run and its init, less load
// sensitive on a busy machine).
func BenchmarkStartVersusBaselineRunc(b *testing.B) {
	env := os.Getenv("E2S_RUNC_BASELINE")
	if env == "" {
		b.Skip("set E2S_RUNC_BASELINE to runc binaries (':'-separated) to compare the pinned one with")
	}
	rts := []*Runc{newTestRunc(b)}
	for i, bin := range strings.Split(env, ":") {
		v, err := runcVersion(bin)
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("baseline-%d: runc %s (%s)", i+1, v, bin)
		r := newTestRunc(b)
		r.Binary = bin
		rts = append(rts, r)
	}
	s := probeSpec(b, "purchasing", probeUID, "sleep")
	ds := make([][]time.Duration, len(rts))
	cpu := make([][]time.Duration, len(rts))
	for i := -1; i < max(b.N, 10); i++ {
		for j, r := range rts {
			d, p := startToFirstLine(b, r, s)
			if err := p.Close(); err != nil {
				b.Fatal(err)
			}
			if i >= 0 { // the first round builds the images
				ds[j] = append(ds[j], d)
				ru := p.(*runcProcess).cmd.ProcessState.SysUsage().(*syscall.Rusage)
				cpu[j] = append(cpu[j], time.Duration(ru.Utime.Nano()+ru.Stime.Nano()))
			}
		}
	}
	b.StopTimer()
	reportMedian(b, "pinned-"+RuncVersion, ds[0])
	reportMedian(b, "pinned-cpu", cpu[0])
	for j := 1; j < len(ds); j++ {
		name := "baseline-" + strconv.Itoa(j)
		reportMedian(b, name, ds[j])
		reportMedian(b, name+"-cpu", cpu[j])
		b.ReportMetric(float64(ds[0][len(ds[0])/2])/float64(ds[j][len(ds[j])/2]), "pinned/"+name)
		b.ReportMetric(float64(cpu[0][len(cpu[0])/2])/float64(cpu[j][len(cpu[j])/2]), "pinned/"+name+"-cpu")
	}
}
