package auditlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// Problem is one place where the log is not what was signed.
type Problem struct {
	Record     int64  `json:"record"`     // seq (0-based) of the first record at fault; -1: none
	Checkpoint int64  `json:"checkpoint"` // position of the checkpoint at fault; -1: none
	What       string `json:"what"`
}

func (p Problem) String() string {
	switch {
	case p.Record >= 0 && p.Checkpoint >= 0:
		return fmt.Sprintf("record %d (line %d), checkpoint %d: %s", p.Record, p.Record+1, p.Checkpoint, p.What)
	case p.Record >= 0:
		return fmt.Sprintf("record %d (line %d): %s", p.Record, p.Record+1, p.What)
	case p.Checkpoint >= 0:
		return fmt.Sprintf("checkpoint %d: %s", p.Checkpoint, p.What)
	}
	return p.What
}

// Report is the outcome of Verify.
type Report struct {
	Log            string    `json:"log"`
	Records        uint64    `json:"records"`
	Checkpoints    int       `json:"checkpoints"`
	Covered        uint64    `json:"covered"`  // records under the last valid signed checkpoint
	Unsigned       uint64    `json:"unsigned"` // records after it, not yet signed
	LastCheckpoint time.Time `json:"last_checkpoint"`
	Root           []byte    `json:"root"` // Merkle tree hash of every record
	HashFile       bool      `json:"hash_file"`
	Problems       []Problem `json:"problems,omitempty"` // first maxProblems, in the order found
	Duration       string    `json:"duration"`
}

// OK reports whether every record is present, in order and unmodified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// FirstBad is the problem at the lowest record (or the first found).
func (r *Report) FirstBad() *Problem {
	var best *Problem
	for i := range r.Problems {
		p := &r.Problems[i]
		if best == nil || (p.Record >= 0 && (best.Record < 0 || p.Record < best.Record)) {
			best = p
		}
	}
	return best
}

const maxProblems = 20

func (r *Report) add(rec, cp int64, format string, args ...any) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, Problem{Record: rec, Checkpoint: cp, What: fmt.Sprintf(format, args...)})
	}
}

// Files of one log: records, leaf hashes, signed checkpoints.
func hashesPath(log string) string      { return log + ".hashes" }
func checkpointsPath(log string) string { return log + ".checkpoints" }

// Verify proves the log at path whole against its signed checkpoints
// (path+".checkpoints") using the verifier key in pubFile: every record
// present, in order (seq = position) and unmodified. With the leaf-hash
// file (path+".hashes") an edited record is named exactly; without it, the
// checkpoint interval that holds it. It needs nothing but the files, so it
// runs offline on a copy. A non-nil error means the files could not be read;
// tampering is reported in Report.Problems.
func Verify(path, pubFile string) (*Report, error) { return verify(path, pubFile, false) }

// VerifyLive is Verify on a log that is being written: a last line still
// being written is not a problem.
func VerifyLive(path, pubFile string) (*Report, error) { return verify(path, pubFile, true) }

func verify(path, pubFile string, live bool) (*Report, error) {
	start := time.Now()
	v, err := LoadVerifier(pubFile)
	if err != nil {
		return nil, err
	}
	rep := &Report{Log: path}
	cf, err := os.Open(checkpointsPath(path))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	var cps []Checkpoint
	if cf != nil {
		cps, _, err = readCheckpoints(cf, v, rep, false)
		cf.Close()
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", path, err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	defer f.Close()
	var hr io.Reader
	var hashCount uint64
	if hf, err := os.Open(hashesPath(path)); err == nil {
		defer hf.Close()
		st, err := hf.Stat()
		if err != nil {
			return nil, err
		}
		hr, hashCount, rep.HashFile = bufio.NewReaderSize(hf, 1<<16), uint64(st.Size()/32), true
	}
	w := newWalker(rep, cps, hr, hashCount)
	_, partial, err := w.walk(f)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", path, err)
	}
	if partial && !live {
		rep.add(int64(w.rng.End()), -1, "the last line is incomplete (cut off)")
	}
	w.finish()
	if hashCount > rep.Records {
		rep.add(int64(rep.Records), -1, "the leaf-hash file holds %d entries but the log only %d records: records at the end were removed", hashCount, rep.Records)
	}
	rep.Duration = time.Since(start).Round(time.Millisecond).String()
	return rep, nil
}

// readCheckpoints reads the JSON-lines checkpoint file, checks each
// signature, numbering and order, and returns the valid checkpoints and the
// byte length of its complete lines.
func readCheckpoints(r io.Reader, v note.Verifier, rep *Report, tolerateCut bool) ([]Checkpoint, int64, error) {
	br := bufio.NewReader(r)
	var cps []Checkpoint
	var valid int64
	for k := int64(0); ; k++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(line) > 0 && !tolerateCut {
				rep.add(-1, k, "incomplete last checkpoint line")
			}
			break
		}
		if err != nil {
			return nil, 0, err
		}
		valid += int64(len(line))
		rep.Checkpoints++
		var cl struct {
			Note string `json:"note"`
		}
		if err := json.Unmarshal(line, &cl); err != nil {
			rep.add(-1, k, "not a checkpoint line: %v", err)
			continue
		}
		c, err := openCheckpoint([]byte(cl.Note), v)
		if err != nil {
			rep.add(-1, k, "refused: %v", err)
			continue
		}
		if c.Seq != uint64(k) {
			rep.add(-1, k, "numbered %d: a checkpoint was deleted, inserted or moved", c.Seq)
			continue
		}
		if n := len(cps); n > 0 && (c.Size < cps[n-1].Size || c.Origin != cps[n-1].Origin) {
			rep.add(-1, k, "signs %d records of %q after one that signed %d of %q", c.Size, c.Origin, cps[n-1].Size, cps[n-1].Origin)
			continue
		}
		cps = append(cps, c)
	}
	if n := len(cps); n > 0 {
		rep.Covered, rep.LastCheckpoint = cps[n-1].Size, cps[n-1].Time
	}
	return cps, valid, nil
}

// walker checks records one by one against the leaf-hash file and the
// checkpoints; Open uses it to recover, Verify to prove.
type walker struct {
	rep       *Report
	cps       []Checkpoint
	next      int
	rng       *compact.Range // tree of the records as they are
	hrng      *compact.Range // tree of the leaf-hash file, once it differs from rng
	stored    [32]byte
	hashes    io.Reader
	hashCount uint64
	missing   [][]byte // leaf hashes of records the hash file lacks
	seqBad    bool
	lastCP    uint64
}

func newWalker(rep *Report, cps []Checkpoint, hashes io.Reader, hashCount uint64) *walker {
	w := &walker{rep: rep, cps: cps, rng: factory.NewEmptyRange(0), hashes: hashes, hashCount: hashCount}
	w.checkpoints()
	return w
}

// walk reads every complete line of r; it returns the bytes in complete
// lines and whether a partial line follows.
func (w *walker) walk(r io.Reader) (int64, bool, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var size int64
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if errors.Is(err, io.EOF) {
			return size, len(line) > 0, nil
		}
		if err != nil {
			return size, false, err
		}
		size += int64(len(line))
		w.add(line[:len(line)-1])
	}
}

func (w *walker) add(line []byte) {
	i := w.rng.End()
	if seq, ok := seqOf(line); !ok {
		w.rep.add(int64(i), -1, "not an audit record")
	} else if seq != i && !w.seqBad {
		w.seqBad = true // one deletion shifts every later record; report the first
		w.rep.add(int64(i), -1, "has seq %d where %d belongs: a record was deleted, inserted or moved here", seq, i)
	}
	h := leafHash(line)
	if w.hashes != nil && i < w.hashCount {
		if _, err := io.ReadFull(w.hashes, w.stored[:]); err == nil {
			// The hash file's tree is the records' tree until they differ.
			if w.hrng == nil && !bytes.Equal(w.stored[:], h) {
				w.hrng = cloneRange(w.rng)
			}
			if w.hrng != nil {
				appendLeaf(w.hrng, slices.Clone(w.stored[:]))
			}
			if !bytes.Equal(w.stored[:], h) {
				w.rep.add(int64(i), -1, "differs from the leaf hash written with it: the record was edited")
			}
		}
	} else {
		w.missing = append(w.missing, h)
	}
	appendLeaf(w.rng, h)
	w.rep.Records = w.rng.End()
	w.checkpoints()
}

// checkpoints compares the tree with every checkpoint signing its size.
func (w *walker) checkpoints() {
	for w.next < len(w.cps) && w.cps[w.next].Size == w.rng.End() {
		c := w.cps[w.next]
		if !bytes.Equal(rootOf(w.rng), c.Root) {
			hashFileGood := w.hrng != nil && w.hrng.End() == w.rng.End() && bytes.Equal(rootOf(w.hrng), c.Root)
			// (hrng nil: the hash file agrees with every record, so it was altered too.)
			if !hashFileGood { // else the edited record was already named by its leaf hash
				w.rep.add(int64(w.lastCP), int64(c.Seq), "records %d..%d do not match the signed tree (and the leaf-hash file was altered too)", w.lastCP, c.Size-1)
			}
		}
		w.lastCP = c.Size
		w.next++
	}
}

func (w *walker) finish() {
	n := w.rng.End()
	for ; w.next < len(w.cps); w.next++ {
		c := w.cps[w.next]
		w.rep.add(int64(n), int64(c.Seq), "the log was truncated: checkpoint signs %d records, the log holds %d", c.Size, n)
		break
	}
	if n >= w.rep.Covered {
		w.rep.Unsigned = n - w.rep.Covered
	}
	w.rep.Root = rootOf(w.rng)
}

// seqOf reads a record's seq. Append writes it first, so the fast path
// reads the digits after `{"seq":`; anything else is decoded in full. (A
// record's bytes are proven by its leaf hash and the checkpoints, not by
// parsing it.)
func seqOf(line []byte) (uint64, bool) {
	const prefix = `{"seq":`
	if bytes.HasPrefix(line, []byte(prefix)) {
		var n uint64
		j := len(prefix)
		for ; j < len(line) && line[j] >= '0' && line[j] <= '9' && j < len(prefix)+19; j++ {
			n = n*10 + uint64(line[j]-'0')
		}
		if j > len(prefix) && j < len(line) && line[j] == ',' {
			return n, true
		}
	}
	var rec struct {
		Seq *uint64 `json:"seq"`
	}
	if err := json.Unmarshal(line, &rec); err != nil || rec.Seq == nil {
		return 0, false
	}
	return *rec.Seq, true
}
