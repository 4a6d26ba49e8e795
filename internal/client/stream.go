package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Streamed files. A document is read from its input and written to a
// temporary file beside the output (".NAME.e2s-partial-PID-RANDOM"), which
// is renamed over the output only when every check has passed; on any
// error, an interrupt or a cancelled context the temporary file is removed
// and an existing output stays as it was. A temporary file left by a
// process that was killed (SIGKILL, power loss) is removed by the next run
// that writes the same output, once its PID is no longer running.

const partialMark = ".e2s-partial-"

// openInput opens an input file ("-" is standard input) and returns it
// with its size (-1 when unknown).
func openInput(path string) (io.ReadCloser, int64, error) {
	if path == "-" {
		return io.NopCloser(os.Stdin), -1, nil
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("input %s: %w", path, ErrNoInput)
		}
		return nil, 0, fmt.Errorf("input %s: %w", path, err)
	}
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	return f, size, nil
}

// pendingFile is an output being written.
type pendingFile struct {
	path string
	mode os.FileMode
	f    *os.File
	w    *bufio.Writer
}

// createOutput checks that path may be written (its directory exists; it
// does not exist unless force) and starts its temporary file.
func createOutput(path string, mode os.FileMode, force bool) (*pendingFile, error) {
	if path == "" || path == "-" {
		return nil, fmt.Errorf("output %q: name a file: %w", path, ErrUsage)
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("output %s: directory %s: %w", path, dir, ErrOutputDir)
	}
	if st, err := os.Stat(path); err == nil {
		if st.IsDir() {
			return nil, fmt.Errorf("output %s is a directory: %w", path, ErrOutputExists)
		}
		if !force {
			return nil, fmt.Errorf("output %s: %w", path, ErrOutputExists)
		}
	}
	removeStalePartials(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+partialMark+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	return &pendingFile{path: path, mode: mode, f: f, w: bufio.NewWriterSize(f, 256<<10)}, nil
}

func (p *pendingFile) Write(b []byte) (int, error) { return p.w.Write(b) }

// commit makes the output appear under its name, whole and synced.
func (p *pendingFile) commit() error {
	err := p.w.Flush()
	if err == nil {
		err = p.f.Chmod(p.mode)
	}
	if err == nil {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p.f.Name(), p.path)
	}
	if err != nil {
		os.Remove(p.f.Name())
		return fmt.Errorf("write %s: %w", p.path, err)
	}
	if d, err := os.Open(filepath.Dir(p.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// abort removes the temporary file.
func (p *pendingFile) abort() {
	if p == nil || p.f == nil {
		return
	}
	p.f.Close()
	os.Remove(p.f.Name())
}

// removeStalePartials removes temporary files for path left by processes
// that no longer run.
func removeStalePartials(path string) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	prefix := "." + base + partialMark
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || !e.Type().IsRegular() {
			continue
		}
		pidText, _, ok := strings.Cut(strings.TrimPrefix(name, prefix), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		// Signal 0 only asks whether the process exists.
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.Remove(filepath.Join(dir, name))
		}
	}
}

// ctxReader stops reading once ctx is done (Ctrl-C, SIGTERM).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInterrupted, context.Cause(c.ctx))
	}
	n, err := c.r.Read(p)
	if err != nil && c.ctx.Err() != nil {
		// The input was closed under a blocked read (closeOnDone).
		return n, fmt.Errorf("%w: %w", ErrInterrupted, context.Cause(c.ctx))
	}
	return n, err
}

// closeOnDone closes the input when ctx is done, so that a read blocked on
// a pipe or FIFO returns; the returned function stops it.
func closeOnDone(ctx context.Context, in io.Closer) func() bool {
	return context.AfterFunc(ctx, func() { in.Close() })
}

// interrupted reports an interrupt that came after the input was read,
// before the output is committed.
func interrupted(ctx context.Context) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrInterrupted, context.Cause(ctx))
	}
	return nil
}

// Progress reports the bytes read on a terminal: bytes, total and rate,
// rewritten on one line of W at most twice a second.
type Progress struct {
	W     io.Writer
	Verb  string
	total int64
	n     int64
	start time.Time
	last  time.Time
}

func (p *Progress) wrap(r io.Reader, total int64) io.Reader {
	if p == nil || p.W == nil {
		return r
	}
	p.total, p.start, p.last = total, time.Now(), time.Now()
	return &progressReader{p: p, r: r}
}

type progressReader struct {
	p *Progress
	r io.Reader
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.n += int64(n)
	if now := time.Now(); now.Sub(pr.p.last) >= 500*time.Millisecond {
		pr.p.last = now
		pr.p.print(now)
	}
	return n, err
}

func (p *Progress) print(now time.Time) {
	rate := float64(p.n) / now.Sub(p.start).Seconds()
	of := ""
	if p.total >= 0 {
		of = " of " + mib(p.total)
	}
	fmt.Fprintf(p.W, "\re2s: %s %s%s, %s/s   ", p.Verb, mib(p.n), of, mib(int64(rate)))
}

// done ends the progress line.
func (p *Progress) done() {
	if p == nil || p.W == nil || p.start.IsZero() {
		return
	}
	p.print(time.Now())
	fmt.Fprintln(p.W)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
