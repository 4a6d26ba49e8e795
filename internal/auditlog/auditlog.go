// Package auditlog is the gate agent's append-only decision log: one JSON
// record per line, durable before Append returns. Appends from many calls
// share one fsync (group commit), so durability does not serialise the gate.
package auditlog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Record is one decision, allowed or denied.
type Record struct {
	Time      time.Time `json:"time"`
	ReqID     string    `json:"req_id"`
	Caller    string    `json:"caller"`
	Target    string    `json:"target,omitempty"`
	Script    string    `json:"script"`
	User      string    `json:"user,omitempty"`
	Decision  string    `json:"decision"` // "allow" or "deny"
	Reason    string    `json:"reason"`
	Status    int       `json:"status"`
	LatencyUS int64     `json:"latency_us"`
	Filters   []string  `json:"filter_hits,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// ErrClosed: the log was closed.
var ErrClosed = errors.New("audit log closed")

// Log is an open audit log file.
type Log struct {
	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	err     error // sticky: once a write or sync fails, every Append fails
	waiters []chan error
	kick    chan struct{}
	done    chan struct{}
}

// Open opens (creating if needed) the log at path for appending.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	l := &Log{f: f, w: bufio.NewWriterSize(f, 64<<10), kick: make(chan struct{}, 1), done: make(chan struct{})}
	go l.flusher()
	return l, nil
}

// Append writes r and returns once it is on stable storage. An error means
// the record may not be durable; the caller must fail closed.
func (l *Log) Append(r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode audit record: %w", err)
	}
	b = append(b, '\n')
	ch := make(chan error, 1)
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return l.err
	}
	if _, err := l.w.Write(b); err != nil {
		l.err = fmt.Errorf("write audit log: %w", err)
		l.mu.Unlock()
		return l.err
	}
	l.waiters = append(l.waiters, ch)
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return <-ch
}

func (l *Log) flusher() {
	for {
		select {
		case <-l.kick:
		case <-l.done:
			return
		}
		l.mu.Lock()
		waiters := l.waiters
		l.waiters = nil
		err := l.err
		if err == nil {
			if err = l.w.Flush(); err == nil {
				err = l.f.Sync()
			}
			if err != nil {
				l.err = fmt.Errorf("sync audit log: %w", err)
				err = l.err
			}
		}
		l.mu.Unlock()
		for _, ch := range waiters {
			ch <- err
		}
	}
}

// Close flushes and closes the log.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == ErrClosed {
		return nil
	}
	close(l.done)
	err := l.w.Flush()
	if err2 := l.f.Close(); err == nil {
		err = err2
	}
	for _, ch := range l.waiters {
		ch <- ErrClosed
	}
	l.waiters = nil
	l.err = ErrClosed
	return err
}

// Read returns every record in the log at path, in order.
func Read(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return out, fmt.Errorf("audit log %s line %d: %w", path, n, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}
