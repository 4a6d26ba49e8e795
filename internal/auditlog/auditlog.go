// Package auditlog is the appliance's append-only, tamper-evident log: one
// JSON record per line, durable before Append returns, each record a leaf of
// an RFC 6962 Merkle tree (transparency-dev/merkle) whose root is signed
// periodically and at close as a checkpoint note (golang.org/x/mod/sumdb/note,
// Ed25519). Appends from many calls share one fsync (group commit), so
// durability does not serialise the gate.
//
// Files, for a log at PATH:
//
//	PATH              records, one JSON object per line, "seq" = position
//	PATH.hashes       the 32-byte leaf hash of each record, written with it
//	PATH.checkpoints  signed checkpoints, one JSON line {"note": ...} each
//	DIR/audit.key     the signing key (0600: supervisor and gate agent only)
//	DIR/audit.pub     its verifier key, for `e2sctl audit verify -pubkey`
//
// If a write or fsync fails, Append returns ErrUnwritable (the caller fails
// closed); the next Append truncates the files back to the last durable
// state and tries again, so the log recovers once the disk is writable.
package auditlog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// Record is one audited event: a gate decision, allowed or denied, or an
// admin command.
type Record struct {
	Seq   uint64    `json:"seq"` // position in the log, set by Append
	Time  time.Time `json:"time"`
	ReqID string    `json:"req_id"` // set by the writer, never by a caller
	// CallerReqID is the request id the caller sent, clipped: detail only
	// (a compartment calling on behalf of a call passes that call's id).
	CallerReqID string `json:"caller_req_id,omitempty"`
	Caller      string `json:"caller"`
	Target      string `json:"target,omitempty"`
	Script      string `json:"script"`
	// User is the person the call was made for, as proven to the gate:
	// reported by the compartment that checked the person's signature
	// (protocol.ProvenUser), or set by a caller that may prove identity
	// (its manifest's ProvesIdentity) on calls it makes for that person.
	User string `json:"user,omitempty"`
	// ClaimedUser is a user a caller that may not prove identity (outside)
	// put in its call, clipped: detail only, never User or the policy's.
	ClaimedUser string   `json:"claimed_user,omitempty"`
	Decision    string   `json:"decision"` // "allow" or "deny"
	Reason      string   `json:"reason"`
	Status      int      `json:"status"`
	LatencyUS   int64    `json:"latency_us"`
	Filters     []string `json:"filter_hits,omitempty"`
	// TargetReason is the reason id the target compartment gave for its
	// answer (purchasing's 401 purchasing.signature_required, say); set by
	// the gate from the answer, reason-id shaped and clipped.
	TargetReason string `json:"target_reason,omitempty"`
	Detail       string `json:"detail,omitempty"`
	// Count is how many calls the record stands for when the gate recorded
	// them in aggregate (refusals over a caller's limits); 0 means one.
	Count int `json:"count,omitempty"`
	// Event is set on records that are not decisions of the gate but
	// events reported to it, naming who reported them ("compartment",
	// "supervisor", "gate"); a gate decision never has it.
	Event string `json:"event,omitempty"`
}

// Options tune a log; the zero value is the appliance's default.
type Options struct {
	KeyFile   string        // signing key; default DIR/audit.key, created if missing
	PubFile   string        // verifier key; default DIR/audit.pub
	Origin    string        // checkpoint origin line; default "e2sgate/audit/<file name>"
	Every     int           // records between checkpoints; default 1000
	Interval  time.Duration // a checkpoint at least this often while records arrive; default 5s
	Syslog    string        // "": local syslog if /dev/log exists; "off"; or a unixgram socket path
	SyslogTag string        // default "e2sgate-audit"
	Log       *slog.Logger  // default: discard
	// Quota bounds the log's files together (records, leaf hashes,
	// checkpoints) in bytes; 0: only the file system bounds them. See
	// Usage for what happens as the log fills up.
	Quota int64
	// OnQuota is called once, after the Append that brought the log to
	// QuotaWarn percent of its quota or of its file system's capacity, with
	// the usage then (and again after the log is reopened, if still so).
	OnQuota func(Usage)
}

// QuotaWarn is the usage, in percent, at which OnQuota is called. At 100 %
// of the quota, or when the file system is out of space, Append fails with
// ErrFull (which is also ErrUnwritable: the caller fails closed).
const QuotaWarn = 90

// Usage is how full a log is: Percent of Limit bytes used, where Limit is
// the quota or the file system's capacity (By says which), whichever is
// fuller.
type Usage struct {
	Used, Limit int64
	Percent     int
	By          string // "quota" or "filesystem"
}

func (o *Options) defaults(path string) {
	dir := filepath.Dir(path)
	if o.KeyFile == "" {
		o.KeyFile = filepath.Join(dir, "audit.key")
	}
	if o.PubFile == "" {
		o.PubFile = filepath.Join(dir, "audit.pub")
	}
	if o.Origin == "" {
		o.Origin = "e2sgate/audit/" + filepath.Base(path)
	}
	if o.Every <= 0 {
		o.Every = 1000
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.SyslogTag == "" {
		o.SyslogTag = "e2sgate-audit"
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// durable is the state of the files after the last successful fsync.
type durable struct {
	logSize, hashSize, cpSize int64
	n                         uint64
	rng                       *compact.Range
}

// Log is an open audit log.
type Log struct {
	path   string
	o      Options
	signer note.Signer

	mu        sync.Mutex
	f, hf, cf *os.File
	w, hw     *bufio.Writer
	n         uint64 // records written (perhaps not yet durable)
	repairs   uint64 // bumped by repairLocked: a flush from before it is void
	logSize   int64
	hashSize  int64
	cpSize    int64
	rng       *compact.Range
	good      durable
	cpSeq     uint64 // number of the next checkpoint
	cpAt      uint64 // tree size signed by the last checkpoint
	err       error  // set when a write failed; the next Append repairs
	closed    bool
	waiters   []chan error
	lines     [][]byte // written since the last sync, for syslog
	fsUsage   Usage    // the file system's, as of the last flush
	warned    bool     // OnQuota was called

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
	sys  *forwarder
}

// Open opens (creating if needed) the log at path with default options.
func Open(path string) (*Log, error) { return OpenWith(path, Options{}) }

// OpenWith opens the log at path. An existing log is first checked against
// its leaf hashes and last checkpoint: a log that was tampered with is
// refused (ErrTampered), so no new checkpoint ever signs an altered record.
// A line cut off by a crash (never acknowledged) is dropped.
func OpenWith(path string, o Options) (*Log, error) {
	o.defaults(path)
	signer, err := EnsureKey(o.KeyFile, o.PubFile)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	verifier, err := LoadVerifier(o.PubFile)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	l := &Log{path: path, o: o, signer: signer, kick: make(chan struct{}, 1), done: make(chan struct{})}
	open := func(p string) (*os.File, error) {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
		return f, nil
	}
	if l.f, err = open(path); err != nil {
		return nil, err
	}
	if l.hf, err = open(hashesPath(path)); err != nil {
		l.f.Close()
		return nil, err
	}
	if l.cf, err = open(checkpointsPath(path)); err != nil {
		l.f.Close()
		l.hf.Close()
		return nil, err
	}
	if err := l.recover(verifier); err != nil {
		l.f.Close()
		l.hf.Close()
		l.cf.Close()
		return nil, err
	}
	l.w, l.hw = bufio.NewWriterSize(l.f, 64<<10), bufio.NewWriterSize(l.hf, 8<<10)
	l.sys = newForwarder(o.Syslog, o.SyslogTag, o.Log)
	l.statFS()
	l.wg.Add(1)
	go l.flusher()
	return l, nil
}

// recover reads the existing files, refuses a tampered log, drops a
// partial last line and completes the leaf-hash file.
func (l *Log) recover(v note.Verifier) error {
	rep := &Report{Log: l.path}
	cps, cpSize, err := readCheckpoints(l.cf, v, rep, true)
	if err != nil {
		return fmt.Errorf("open audit log: read checkpoints: %w", err)
	}
	st, err := l.hf.Stat()
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	hashCount := uint64(st.Size() / 32)
	w := newWalker(rep, cps, bufio.NewReader(l.hf), hashCount)
	logSize, partial, err := w.walk(l.f)
	if err != nil {
		return fmt.Errorf("open audit log: read: %w", err)
	}
	w.finish()
	if !rep.OK() {
		return fmt.Errorf("%w: %s: %s; run `e2sctl audit verify` and move the log aside to start a new one",
			ErrTampered, l.path, rep.FirstBad())
	}
	n := w.rng.End()
	if partial {
		l.o.Log.Warn("audit log: dropping a line cut off by a crash", "log", l.path, "records", n)
	}
	if err := l.f.Truncate(logSize); err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	if err := l.cf.Truncate(cpSize); err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	hashSize := int64(min(hashCount, n)) * 32
	if err := l.hf.Truncate(hashSize); err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	for _, h := range w.missing {
		if _, err := l.hf.Write(h); err != nil {
			return fmt.Errorf("open audit log: complete leaf hashes: %w", err)
		}
		hashSize += 32
	}
	if err := l.hf.Sync(); err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	l.n, l.logSize, l.hashSize, l.cpSize, l.rng = n, logSize, hashSize, cpSize, w.rng
	l.cpSeq, l.cpAt = uint64(len(cps)), rep.Covered
	l.good = durable{logSize: logSize, hashSize: hashSize, cpSize: cpSize, n: n, rng: cloneRange(w.rng)}
	return nil
}

// Len is the number of durable records.
func (l *Log) Len() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.good.n
}

// Append writes r (its Seq set to its position) and returns once it is on
// stable storage. An error means the record may not be durable; the caller
// must fail closed.
func (l *Log) Append(r Record) error {
	ch := make(chan error, 1)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.err != nil {
		if err := l.repairLocked(); err != nil {
			l.mu.Unlock()
			return err
		}
	}
	r.Seq = l.n
	b, err := json.Marshal(r)
	if err != nil {
		l.mu.Unlock()
		return fmt.Errorf("encode audit record: %w", err)
	}
	if used := l.logSize + l.hashSize + l.cpSize + int64(len(b)) + 1 + 32; l.o.Quota > 0 && used > l.o.Quota {
		l.mu.Unlock()
		return fmt.Errorf("%w: %w: %s: a record of %d bytes would exceed the quota of %d bytes",
			ErrUnwritable, ErrFull, l.path, len(b), l.o.Quota)
	}
	h := leafHash(b)
	if _, err := l.w.Write(append(b, '\n')); err != nil {
		l.failLocked(err)
		l.mu.Unlock()
		return l.err
	}
	if _, err := l.hw.Write(h); err != nil {
		l.failLocked(err)
		l.mu.Unlock()
		return l.err
	}
	appendLeaf(l.rng, h)
	l.n++
	l.logSize += int64(len(b)) + 1
	l.hashSize += 32
	l.waiters = append(l.waiters, ch)
	l.lines = append(l.lines, b)
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	if err := <-ch; err != nil {
		return err
	}
	l.checkQuota()
	return nil
}

// Usage is how full the log is now.
func (l *Log) Usage() Usage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.usageLocked()
}

func (l *Log) usageLocked() Usage {
	u := l.fsUsage
	if q := l.o.Quota; q > 0 {
		used := l.logSize + l.hashSize + l.cpSize
		if qu := (Usage{Used: used, Limit: q, Percent: int(used * 100 / q), By: "quota"}); qu.Percent >= u.Percent {
			u = qu
		}
	}
	return u
}

// checkQuota calls OnQuota once the log is QuotaWarn percent full.
func (l *Log) checkQuota() {
	l.mu.Lock()
	u := l.usageLocked()
	warn := !l.warned && u.Percent >= QuotaWarn
	if warn {
		l.warned = true
	}
	l.mu.Unlock()
	if warn {
		l.o.Log.Warn("audit log nearly full", "log", l.path, "percent", u.Percent, "used", u.Used, "limit", u.Limit, "by", u.By)
		if l.o.OnQuota != nil {
			l.o.OnQuota(u)
		}
	}
}

// statFS notes how full the log's file system is.
func (l *Log) statFS() {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(l.path), &st); err != nil || st.Blocks == 0 {
		return
	}
	size := int64(st.Blocks) * st.Bsize
	used := size - int64(st.Bavail)*st.Bsize
	l.mu.Lock()
	l.fsUsage = Usage{Used: used, Limit: size, Percent: int(used * 100 / size), By: "filesystem"}
	l.mu.Unlock()
}

func (l *Log) failLocked(err error) {
	if l.err == nil && errors.Is(err, syscall.ENOSPC) {
		l.err = fmt.Errorf("%w: %w: %s: %w", ErrUnwritable, ErrFull, l.path, err)
		l.o.Log.Error("audit log unwritable: its file system is full", "log", l.path, "error", err)
	}
	if l.err == nil {
		l.err = fmt.Errorf("%w: %s: %w", ErrUnwritable, l.path, err)
		l.o.Log.Error("audit log unwritable", "log", l.path, "error", err)
	}
}

// repairLocked puts the files back to their last durable state so that
// appending can resume.
func (l *Log) repairLocked() error {
	g := l.good
	for _, t := range []struct {
		f    *os.File
		size int64
	}{{l.f, g.logSize}, {l.hf, g.hashSize}, {l.cf, g.cpSize}} {
		if err := t.f.Truncate(t.size); err != nil {
			return fmt.Errorf("%w: %s: repair: %w", ErrUnwritable, l.path, err)
		}
	}
	l.w.Reset(l.f)
	l.hw.Reset(l.hf)
	l.n, l.logSize, l.hashSize, l.cpSize, l.rng = g.n, g.logSize, g.hashSize, g.cpSize, cloneRange(g.rng)
	l.lines = nil
	l.err = nil
	l.repairs++
	l.o.Log.Info("audit log writable again", "log", l.path, "records", g.n)
	return nil
}

// flushLocked writes the buffers out and returns the state that is durable
// once syncFiles succeeds.
func (l *Log) flushLocked() (durable, error) {
	if l.err != nil {
		return durable{}, l.err
	}
	for _, step := range []func() error{l.w.Flush, l.hw.Flush} {
		if err := step(); err != nil {
			l.failLocked(err)
			return durable{}, l.err
		}
	}
	return durable{logSize: l.logSize, hashSize: l.hashSize, cpSize: l.cpSize, n: l.n, rng: cloneRange(l.rng)}, nil
}

// syncFiles makes what flushLocked wrote durable; it needs no lock. The
// two files are synced at once, so a group commit waits for one disk flush
// rather than two in a row, and with fdatasync: the records and hashes are
// appended, and fdatasync writes the data and the size that reaches it,
// leaving only timestamps behind.
func (l *Log) syncFiles() error {
	hashes := make(chan error, 1)
	go func() { hashes <- datasync(l.hf) }()
	err := datasync(l.f)
	return errors.Join(err, <-hashes)
}

func datasync(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		for {
			if serr = syscall.Fdatasync(int(fd)); serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

// syncLocked makes everything written durable.
func (l *Log) syncLocked() error {
	if l.err != nil {
		return l.err
	}
	for _, step := range []func() error{l.w.Flush, l.hw.Flush, l.f.Sync, l.hf.Sync} {
		if err := step(); err != nil {
			l.failLocked(err)
			return l.err
		}
	}
	l.good = durable{logSize: l.logSize, hashSize: l.hashSize, cpSize: l.cpSize, n: l.n, rng: cloneRange(l.rng)}
	return nil
}

// checkpointLocked signs the tree of every durable record.
func (l *Log) checkpointLocked() error {
	if l.err != nil {
		return l.err
	}
	c := Checkpoint{Origin: l.o.Origin, Size: l.good.n, Root: rootOf(l.good.rng), Seq: l.cpSeq, Time: time.Now()}
	msg, err := signCheckpoint(c, l.signer)
	if err != nil {
		return fmt.Errorf("sign audit checkpoint: %w", err)
	}
	b, _ := json.Marshal(struct {
		Note string `json:"note"`
	}{string(msg)})
	b = append(b, '\n')
	if _, err := l.cf.Write(b); err != nil {
		l.failLocked(err)
		return l.err
	}
	if err := l.cf.Sync(); err != nil {
		l.failLocked(err)
		return l.err
	}
	l.cpSize += int64(len(b))
	l.good.cpSize = l.cpSize
	l.cpSeq++
	l.cpAt = c.Size
	return nil
}

// Checkpoint makes every record durable and signs the tree now.
func (l *Log) Checkpoint() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if err := l.syncLocked(); err != nil {
		return err
	}
	if l.cpAt == l.good.n && l.cpSeq > 0 {
		return nil
	}
	return l.checkpointLocked()
}

func (l *Log) flusher() {
	defer l.wg.Done()
	tick := time.NewTicker(l.o.Interval)
	defer tick.Stop()
	for {
		periodic := false
		select {
		case <-l.kick:
		case <-tick.C:
			periodic = true
		case <-l.done:
			return
		}
		// Flush under the lock, fsync outside it: appends go on into the
		// buffers meanwhile and are committed by the next round, so one
		// fsync serves every record that arrived while the last one ran.
		l.mu.Lock()
		waiters, lines := l.waiters, l.lines
		l.waiters, l.lines = nil, nil
		snap, err := l.flushLocked()
		repairs := l.repairs
		l.mu.Unlock()
		if err == nil {
			err = l.syncFiles()
		}
		l.statFS()
		l.mu.Lock()
		switch {
		case err != nil:
			l.failLocked(err)
			err = l.err
		case l.err != nil: // an append failed meanwhile: repair drops this batch too
			err = l.err
		case l.repairs != repairs: // failed and repaired meanwhile: this batch is gone
			err = fmt.Errorf("%w: %s: the batch was dropped by a repair", ErrUnwritable, l.path)
		default:
			l.good = snap
		}
		if err == nil && l.good.n > l.cpAt && (periodic || l.good.n-l.cpAt >= uint64(l.o.Every)) {
			if cerr := l.checkpointLocked(); cerr != nil {
				l.o.Log.Error("audit checkpoint failed", "log", l.path, "error", cerr)
			}
		}
		l.mu.Unlock()
		for _, ch := range waiters {
			ch <- err
		}
		if err == nil {
			l.sys.send(lines)
		}
	}
}

// Close makes every record durable, signs a final checkpoint and closes.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.syncLocked()
	if err == nil && (l.good.n > l.cpAt || l.cpSeq == 0) && l.good.n > 0 {
		err = l.checkpointLocked()
	}
	for _, ch := range l.waiters {
		ch <- err
	}
	if err == nil {
		l.sys.send(l.lines)
	}
	l.waiters, l.lines = nil, nil
	for _, f := range []*os.File{l.f, l.hf, l.cf} {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	l.sys.close()
	return err
}

// Filter selects records for Search; zero fields match everything.
type Filter struct {
	Compartment string    // caller or target
	Decision    string    // allow, deny
	User        string    // exact user
	Script      string    // substring
	Reason      string    // exact reason id
	ReqID       string    // exact request id
	Since       time.Time // inclusive
	Until       time.Time // exclusive
}

// Match reports whether r passes f.
func (f Filter) Match(r Record) bool {
	return (f.Compartment == "" || r.Caller == f.Compartment || r.Target == f.Compartment) &&
		(f.Decision == "" || r.Decision == f.Decision) &&
		(f.User == "" || r.User == f.User) &&
		(f.Script == "" || strings.Contains(r.Script, f.Script)) &&
		(f.Reason == "" || r.Reason == f.Reason) &&
		(f.ReqID == "" || r.ReqID == f.ReqID) &&
		(f.Since.IsZero() || !r.Time.Before(f.Since)) &&
		(f.Until.IsZero() || r.Time.Before(f.Until))
}

// Search returns the last limit records of the log at path matching f
// (limit <= 0: all), oldest first.
func Search(path string, f Filter, limit int) ([]Record, error) {
	var out []Record
	err := scan(path, func(r Record) {
		if !f.Match(r) {
			return
		}
		out = append(out, r)
		if limit > 0 && len(out) > 2*limit {
			out = append(out[:0], out[len(out)-limit:]...)
		}
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, err
}

// Read returns every record in the log at path, in order.
func Read(path string) ([]Record, error) { return Search(path, Filter{}, 0) }

func scan(path string, fn func(Record)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return nil // a partial last line is not a record yet
		}
		if err != nil {
			return err
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("audit log %s line %d: %w", path, n, err)
		}
		fn(r)
	}
}
