package auditlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// followPoll is how often Follow looks for new records.
const followPoll = 100 * time.Millisecond

// Follow calls fn for every complete record appended to the log at path
// after offset, until ctx ends. It waits for a log that does not exist yet
// (its writer has not made it), and goes on from the new end of a log that
// shrank (the writer dropped records that never became durable).
func Follow(ctx context.Context, path string, offset int64, fn func(Record)) error {
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	f, err := os.Open(path)
	for errors.Is(err, fs.ErrNotExist) {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		f, err = os.Open(path)
	}
	if err != nil {
		return fmt.Errorf("follow %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return fmt.Errorf("follow %s: %w", path, err)
	}
	var pending []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		pending = append(pending, buf[:n]...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			var rec Record
			if json.Unmarshal(pending[:i], &rec) == nil {
				fn(rec)
			}
			pending = pending[i+1:]
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("follow %s: %w", path, err)
		}
		if n > 0 {
			continue
		}
		if pos, perr := f.Seek(0, io.SeekCurrent); perr == nil {
			if st, serr := f.Stat(); serr == nil && st.Size() < pos {
				f.Seek(st.Size(), io.SeekStart)
				pending = pending[:0]
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
