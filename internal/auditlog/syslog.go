package auditlog

import (
	"log/slog"
	"log/syslog"
	"os"
	"sync/atomic"
)

// forwarder copies durable records, as JSON lines, to syslog/journald for
// the customer's collector. It never blocks or fails the log: with no
// syslog socket it does nothing, and when its queue is full it counts the
// lines it drops (the log itself holds them all).
type forwarder struct {
	ch      chan [][]byte
	done    chan struct{}
	Dropped atomic.Uint64
}

func newForwarder(addr, tag string, log *slog.Logger) *forwarder {
	if addr == "off" {
		return nil
	}
	var w *syslog.Writer
	var err error
	if addr == "" {
		if _, serr := os.Stat("/dev/log"); serr != nil {
			log.Info("no /dev/log: audit records are not forwarded to syslog")
			return nil
		}
		w, err = syslog.New(syslog.LOG_INFO|syslog.LOG_AUTHPRIV, tag)
	} else {
		w, err = syslog.Dial("unixgram", addr, syslog.LOG_INFO|syslog.LOG_AUTHPRIV, tag)
	}
	if err != nil {
		log.Warn("audit records are not forwarded to syslog", "error", err)
		return nil
	}
	f := &forwarder{ch: make(chan [][]byte, 1024), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer w.Close()
		for lines := range f.ch {
			for _, l := range lines {
				w.Info(string(l))
			}
		}
	}()
	return f
}

func (f *forwarder) send(lines [][]byte) {
	if f == nil || len(lines) == 0 {
		return
	}
	select {
	case f.ch <- lines:
	default:
		f.Dropped.Add(uint64(len(lines)))
	}
}

func (f *forwarder) close() {
	if f == nil {
		return
	}
	close(f.ch)
	<-f.done
}
