package auditlog

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// KeyName is the signer name in every checkpoint signature.
const KeyName = "e2sgate-audit"

// Checkpoint is the signed statement "the log Origin had Size records whose
// RFC 6962 Merkle tree hash is Root", in the C2SP tlog-checkpoint layout:
//
//	<origin>
//	<size>
//	<base64 root hash>
//	seq <n>            checkpoints are numbered, so one deleted leaves a gap
//	time <RFC 3339>
//
// followed by a blank line and the note signature (golang.org/x/mod/sumdb/note).
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	Seq    uint64
	Time   time.Time
}

func (c Checkpoint) text() string {
	return fmt.Sprintf("%s\n%d\n%s\nseq %d\ntime %s\n", c.Origin, c.Size,
		base64.StdEncoding.EncodeToString(c.Root), c.Seq, c.Time.UTC().Format(time.RFC3339Nano))
}

func parseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[3], "seq ") || !strings.HasPrefix(lines[4], "time ") {
		return Checkpoint{}, errors.New("malformed checkpoint body")
	}
	var c Checkpoint
	var err error
	c.Origin = lines[0]
	if c.Size, err = strconv.ParseUint(lines[1], 10, 64); err != nil {
		return c, fmt.Errorf("checkpoint size: %w", err)
	}
	if c.Root, err = base64.StdEncoding.DecodeString(lines[2]); err != nil || len(c.Root) != 32 {
		return c, fmt.Errorf("checkpoint root hash malformed")
	}
	if c.Seq, err = strconv.ParseUint(strings.TrimPrefix(lines[3], "seq "), 10, 64); err != nil {
		return c, fmt.Errorf("checkpoint seq: %w", err)
	}
	if c.Time, err = time.Parse(time.RFC3339Nano, strings.TrimPrefix(lines[4], "time ")); err != nil {
		return c, fmt.Errorf("checkpoint time: %w", err)
	}
	return c, nil
}

// signCheckpoint returns the signed note of c.
func signCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.text()}, s)
}

// openCheckpoint checks msg's signature with v and parses its body.
func openCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("signature: %w", err)
	}
	return parseCheckpoint(n.Text)
}

// EnsureKey makes sure a signing key exists at keyFile (mode 0600, readable
// only by its owner: the supervisor and gate agent, never an admin role)
// and its verifier key at pubFile (0644), creating both if missing. Two
// processes racing to create it end up with the same key.
func EnsureKey(keyFile, pubFile string) (note.Signer, error) {
	b, err := os.ReadFile(keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		skey, vkey, gerr := note.GenerateKey(rand.Reader, KeyName)
		if gerr != nil {
			return nil, fmt.Errorf("%w: generate: %w", ErrKey, gerr)
		}
		tmp, terr := os.CreateTemp(filepath.Dir(keyFile), ".audit-key-*")
		if terr != nil {
			return nil, fmt.Errorf("%w: %w", ErrKey, terr)
		}
		_, werr := tmp.WriteString(skey + "\n")
		if werr == nil {
			werr = tmp.Sync()
		}
		tmp.Close()
		if werr == nil {
			werr = os.Link(tmp.Name(), keyFile) // fails if another process won the race
		}
		os.Remove(tmp.Name())
		if werr != nil && !errors.Is(werr, fs.ErrExist) {
			return nil, fmt.Errorf("%w: write %s: %w", ErrKey, keyFile, werr)
		}
		if werr == nil {
			if err := writeFileAtomic(pubFile, []byte(vkey+"\n"), 0o644); err != nil {
				return nil, fmt.Errorf("%w: write %s: %w", ErrKey, pubFile, err)
			}
		}
		b, err = os.ReadFile(keyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, keyFile, err)
	}
	if _, err := os.Stat(pubFile); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s exists but its verifier key %s does not", ErrKey, keyFile, pubFile)
	}
	return s, nil
}

// LoadVerifier reads a verifier key file written by EnsureKey.
func LoadVerifier(pubFile string) (note.Verifier, error) {
	b, err := os.ReadFile(pubFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, pubFile, err)
	}
	return v, nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// The Merkle tree: RFC 6962 hashing from transparency-dev/merkle, kept as a
// compact range (O(log n) hashes) so appending needs no stored tree.
var factory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

func leafHash(line []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(line) }

func rootOf(r *compact.Range) []byte {
	if r.End() == 0 {
		return rfc6962.DefaultHasher.EmptyRoot()
	}
	h, err := r.GetRootHash(nil)
	if err != nil {
		panic(fmt.Sprintf("compact range root: %v", err)) // only on a range not starting at 0
	}
	return h
}

func cloneRange(r *compact.Range) *compact.Range {
	hs := make([][]byte, len(r.Hashes()))
	copy(hs, r.Hashes())
	c, err := factory.NewRange(r.Begin(), r.End(), hs)
	if err != nil {
		panic(fmt.Sprintf("clone compact range: %v", err))
	}
	return c
}

func appendLeaf(r *compact.Range, h []byte) {
	if err := r.Append(h, nil); err != nil {
		panic(fmt.Sprintf("append to compact range: %v", err))
	}
}
