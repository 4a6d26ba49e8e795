// Command benchdocs measures e2s protect and open against the equivalent
// openssl -stream pipelines in the same run (make bench-documents): sign
// with P-256 and encrypt with AES-256-GCM for an RSA-3072 recipient and
// the sender's P-256 key, then decrypt and verify, on random documents of
// the given sizes. Time is wall-clock per command and CPU (user + system
// from wait4), each the best of -runs;
// peak RSS is each child process's ru_maxrss from wait4 (for a pipeline,
// the larger of its two processes). It prints a Markdown table and writes
// it to -out. Work files go to a temporary directory that is removed.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	e2s := flag.String("e2s", "bin/e2s", "the e2s `binary` to measure")
	out := flag.String("out", "bin/artifacts/bench-documents.md", "write the table to `file`")
	sizes := flag.String("sizes", "100M,1G", "document `sizes` (M = MiB, G = GiB)")
	runs := flag.Int("runs", 3, "runs per row; the best is reported")
	tmp := flag.String("tmp", os.TempDir(), "`directory` for the work files")
	timeout := flag.Duration("timeout", 20*time.Minute, "stop an openssl pipeline after `d` and report the time as a lower bound")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log, *e2s, *out, *sizes, *runs, *tmp, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "benchdocs:", err)
		os.Exit(1)
	}
}

// measurement is one command's or pipeline's cost.
type measurement struct {
	stopped bool // killed at the timeout: wall and CPU are lower bounds
	wall    time.Duration
	cpu     time.Duration // user + system of the process(es)
	maxRSS  int64         // bytes
}

// better keeps the best wall time, the best CPU time and the larger RSS
// seen (RSS is a bound, so the worst run counts).
func (m measurement) better(o measurement) measurement {
	if m.wall == 0 {
		return o
	}
	if m.stopped != o.stopped { // a finished run beats a stopped one
		if m.stopped {
			return o
		}
		return m
	}
	return measurement{stopped: m.stopped, wall: min(m.wall, o.wall), cpu: min(m.cpu, o.cpu), maxRSS: max(m.maxRSS, o.maxRSS)}
}

type bench struct {
	log      *slog.Logger
	timeout  time.Duration
	dir      string
	e2s      string
	openssl  string
	env      []string
	a, b     string // e2s config files of sender alice and recipient bob
	aliceKey string
	alicePEM string
	bobKey   string
	bobPEM   string
}

func run(log *slog.Logger, e2s, out, sizeList string, runs int, tmp string, timeout time.Duration) error {
	e2sAbs, err := filepath.Abs(e2s)
	if err != nil {
		return err
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		return fmt.Errorf("openssl not found: install it (make deps): %w", err)
	}
	dir, err := os.MkdirTemp(tmp, "bench-documents-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{log: log, timeout: timeout, dir: dir, e2s: e2sAbs, openssl: openssl,
		env: append(os.Environ(), "E2S_PASSWORD=bench-documents-password")}
	if err := b.setup(); err != nil {
		return fmt.Errorf("set up parties: %w", err)
	}
	ver, _ := exec.Command(openssl, "version").Output()
	var table strings.Builder
	fmt.Fprintf(&table, "# e2s protect/open against openssl cms -stream\n\n")
	fmt.Fprintf(&table, "Measured %s by `make bench-documents` (internal/tools/benchdocs): %s; %d CPUs; best of %d runs per row.\n",
		time.Now().UTC().Format(time.DateOnly), strings.TrimSpace(string(ver)), numCPU(), runs)
	fmt.Fprintf(&table, "Sign P-256 (SHA-256), AES-256-GCM for RSA-3072 and P-256 recipients; random data (e2s -compress auto does not compress it).\n")
	fmt.Fprintf(&table, "openssl: `cms -sign -stream | cms -encrypt -stream`, `cms -decrypt | cms -verify`; RSS is the larger process of the pipeline.\n\n")
	fmt.Fprintf(&table, "e2s fsyncs its output before renaming it into place (crash safety); openssl does not. CPU is user + system time of the process(es).\n")
	fmt.Fprintf(&table, "An openssl pipeline still running after %s is stopped: its figures are then lower bounds (>) and the ratios upper bounds (<).\n\n", timeout)
	fmt.Fprintf(&table, "| operation | size | e2s wall | openssl wall | wall ratio e2s/openssl | e2s CPU | openssl CPU | CPU ratio | e2s peak RSS | openssl peak RSS |\n")
	fmt.Fprintf(&table, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, s := range strings.Split(sizeList, ",") {
		size, err := parseSize(s)
		if err != nil {
			return err
		}
		n := runs
		if size >= 1<<30 && n > 1 {
			n = 1 // a GiB row takes long enough on a shared machine
		}
		rows, err := b.measure(size, n)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		for _, r := range rows {
			// A stopped openssl run is a lower bound on its time (and RSS),
			// so the ratios are upper bounds.
			gt, lt := "", ""
			if r.ossl.stopped {
				gt, lt = "> ", "< "
			}
			fmt.Fprintf(&table, "| %s | %s | %.2f s | %s%.2f s | %s%.2f | %.2f s | %s%.2f s | %s%.2f | %.1f MiB | %s%.1f MiB |\n", r.op, s,
				r.e2s.wall.Seconds(), gt, r.ossl.wall.Seconds(), lt, r.e2s.wall.Seconds()/r.ossl.wall.Seconds(),
				r.e2s.cpu.Seconds(), gt, r.ossl.cpu.Seconds(), lt, r.e2s.cpu.Seconds()/r.ossl.cpu.Seconds(),
				float64(r.e2s.maxRSS)/(1<<20), gt, float64(r.ossl.maxRSS)/(1<<20))
		}
	}
	fmt.Print(table.String())
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, []byte(table.String()), 0o644)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return bytes.Count(b, []byte("\nprocessor")) + 1
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("size %q: a number with M or G", s)
	}
	return v * mult, nil
}

// setup makes alice (P-256) and bob (RSA-3072) with each other's
// certificates, and their keys as PEM for openssl.
func (b *bench) setup() error {
	b.a, b.b = filepath.Join(b.dir, "alice", "e2s.yaml"), filepath.Join(b.dir, "bob", "e2s.yaml")
	for _, p := range []struct{ cfg, name, typ string }{{b.a, "alice", "ecdsa-p256"}, {b.b, "bob", "rsa-3072"}} {
		if err := b.e2sRun(p.cfg, "init", "-label", p.name); err != nil {
			return err
		}
		if err := b.e2sRun(p.cfg, "keygen", "-type", p.typ); err != nil {
			return err
		}
		pem := filepath.Join(b.dir, p.name+".pem")
		if err := b.e2sRun(p.cfg, "cert", "export", "-out", pem); err != nil {
			return err
		}
		key := filepath.Join(b.dir, p.name+".key")
		if _, err := b.cmd(b.openssl, "pkcs12", "-in", filepath.Join(filepath.Dir(p.cfg), "keystore", p.name+".p12"),
			"-nocerts", "-nodes", "-passin", "env:E2S_PASSWORD", "-out", key); err != nil {
			return err
		}
	}
	b.alicePEM, b.aliceKey = filepath.Join(b.dir, "alice.pem"), filepath.Join(b.dir, "alice.key")
	b.bobPEM, b.bobKey = filepath.Join(b.dir, "bob.pem"), filepath.Join(b.dir, "bob.key")
	if err := b.e2sRun(b.a, "certstore", "add", "bob", b.bobPEM); err != nil {
		return err
	}
	return b.e2sRun(b.b, "certstore", "add", "alice", b.alicePEM)
}

func (b *bench) e2sRun(cfg string, args ...string) error {
	_, err := b.cmd(b.e2s, append([]string{"-config", cfg}, args...)...)
	return err
}

// cmd runs one command and measures it.
func (b *bench) cmd(path string, args ...string) (measurement, error) {
	c := exec.Command(path, args...)
	c.Env = b.env
	var stderr bytes.Buffer
	c.Stdout, c.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := c.Run(); err != nil {
		return measurement{}, fmt.Errorf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, stderr.String())
	}
	return measurement{wall: time.Since(start), cpu: cpuTime(c), maxRSS: maxRSS(c)}, nil
}

// pipe runs first | second and measures both.
func (b *bench) pipe(first, second []string) (measurement, error) {
	c1, c2 := exec.Command(first[0], first[1:]...), exec.Command(second[0], second[1:]...)
	c1.Env, c2.Env = b.env, b.env
	r, w, err := os.Pipe()
	if err != nil {
		return measurement{}, err
	}
	var e1, e2 bytes.Buffer
	c1.Stdout, c1.Stderr = w, &e1
	c2.Stdin, c2.Stdout, c2.Stderr = r, io.Discard, &e2
	start := time.Now()
	if err := c1.Start(); err != nil {
		return measurement{}, err
	}
	if err := c2.Start(); err != nil {
		c1.Process.Kill()
		c1.Wait()
		return measurement{}, err
	}
	w.Close()
	r.Close()
	// At the timeout, stop the two processes this function started.
	stopped := false
	timer := time.AfterFunc(b.timeout, func() {
		stopped = true
		c1.Process.Kill()
		c2.Process.Kill()
	})
	err1, err2 := c1.Wait(), c2.Wait()
	timer.Stop()
	wall := time.Since(start)
	if stopped {
		b.log.Warn("openssl pipeline stopped at the timeout", "timeout", b.timeout.String())
		return measurement{stopped: true, wall: wall, cpu: cpuTime(c1) + cpuTime(c2), maxRSS: max(maxRSS(c1), maxRSS(c2))}, nil
	}
	if err1 != nil || err2 != nil {
		return measurement{}, fmt.Errorf("pipeline %v | %v: %v %v\n%s%s", first, second, err1, err2, e1.String(), e2.String())
	}
	return measurement{wall: wall, cpu: cpuTime(c1) + cpuTime(c2), maxRSS: max(maxRSS(c1), maxRSS(c2))}, nil
}

func cpuTime(c *exec.Cmd) time.Duration {
	return c.ProcessState.UserTime() + c.ProcessState.SystemTime()
}

func maxRSS(c *exec.Cmd) int64 {
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024 // KiB on Linux
	}
	return 0
}

type row struct {
	op        string
	e2s, ossl measurement
}

// measure protects and opens one document both ways, runs times.
func (b *bench) measure(size int64, runs int) ([]row, error) {
	doc := filepath.Join(b.dir, "doc")
	if err := writeRandom(doc, size); err != nil {
		return nil, err
	}
	defer os.Remove(doc)
	e2sOut, osslOut := filepath.Join(b.dir, "doc.e2s.p7m"), filepath.Join(b.dir, "doc.ossl.p7m")
	e2sBack, osslBack := filepath.Join(b.dir, "back.e2s"), filepath.Join(b.dir, "back.ossl")
	defer os.Remove(e2sOut)
	defer os.Remove(osslOut)
	defer os.Remove(e2sBack)
	defer os.Remove(osslBack)
	o := b.openssl
	var prot, open row
	prot.op, open.op = "protect", "open"
	for i := 0; i < runs; i++ {
		b.log.Info("run", "size", size, "run", i+1)
		m, err := b.cmd(b.e2s, "-config", b.a, "protect", "-q", "-force", "-to", "bob", doc, e2sOut)
		if err != nil {
			return nil, err
		}
		prot.e2s = prot.e2s.better(m)
		if m, err = b.pipe(
			[]string{o, "cms", "-sign", "-stream", "-binary", "-nodetach", "-md", "sha256", "-in", doc,
				"-signer", b.alicePEM, "-inkey", b.aliceKey, "-outform", "DER"},
			[]string{o, "cms", "-encrypt", "-stream", "-binary", "-aes-256-gcm", "-inform", "DER", "-outform", "DER",
				"-out", osslOut, "-recip", b.bobPEM, "-recip", b.alicePEM}); err != nil {
			return nil, err
		}
		prot.ossl = prot.ossl.better(m)
		if m, err = b.cmd(b.e2s, "-config", b.b, "open", "-q", "-force", e2sOut, e2sBack); err != nil {
			return nil, err
		}
		open.e2s = open.e2s.better(m)
		if m, err = b.pipe(
			[]string{o, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", osslOut, "-recip", b.bobPEM, "-inkey", b.bobKey},
			[]string{o, "cms", "-verify", "-binary", "-inform", "DER", "-CAfile", b.alicePEM, "-purpose", "any", "-out", osslBack}); err != nil {
			return nil, err
		}
		open.ossl = open.ossl.better(m)
		backs := []string{e2sBack}
		if !m.stopped {
			backs = append(backs, osslBack)
		}
		for _, back := range backs {
			if err := sameSize(doc, back); err != nil {
				return nil, err
			}
		}
	}
	return []row{prot, open}, nil
}

func sameSize(a, b string) error {
	sa, err := os.Stat(a)
	if err != nil {
		return err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return err
	}
	if sa.Size() != sb.Size() {
		return fmt.Errorf("%s has %d bytes, %s %d", b, sb.Size(), a, sa.Size())
	}
	return nil
}

func writeRandom(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(rand.NewChaCha8([32]byte{7}), size)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
