package client

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Output is one file an operation produces.
type Output struct {
	Path string
	Data []byte
	Mode os.FileMode
}

// writeOutputs writes every output atomically (temporary file in the same
// directory, fsync, rename). If one fails, those already renamed are removed
// again, so a failed operation leaves no output behind.
func writeOutputs(outs ...Output) error {
	var done []string
	for _, o := range outs {
		if o.Path == "" {
			continue
		}
		if err := writeAtomic(o.Path, o.Data, o.Mode); err != nil {
			for _, p := range done {
				os.Remove(p)
			}
			return err
		}
		done = append(done, o.Path)
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) (err error) {
	if mode == 0 {
		mode = 0o600
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return fmt.Errorf("output %s: directory %s: %w", path, filepath.Dir(path), ErrOutputDir)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// MaxInput bounds the size of an input file read whole.
const MaxInput = 1 << 30

// readInput reads a whole input file; "-" is standard input.
func readInput(path string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("input %s: %w", path, ErrNoInput)
		}
		if err != nil {
			return nil, fmt.Errorf("read input: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxInput+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxInput {
		return nil, fmt.Errorf("read %s: larger than %d bytes: %w", path, MaxInput, ErrBadInput)
	}
	return data, nil
}

var errSamePath = errors.New("the same file is named twice")

// distinct refuses the same file named twice among an operation's inputs
// and outputs (empty names are skipped).
func distinct(paths ...string) error {
	seen := map[string]bool{}
	for _, p := range paths {
		if p == "" || p == "-" {
			continue
		}
		a, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if seen[a] {
			return fmt.Errorf("%s: %w: %w", p, errSamePath, ErrUsage)
		}
		seen[a] = true
	}
	return nil
}
