// Package metrics is the appliance's Prometheus metrics, served only to
// management: a root-only unix socket under run_dir and the operator's
// `e2sctl metrics`. The gate agent's figures come from its audit records
// (the supervisor follows the log), so the reference monitor carries no
// metrics code and a metric can never disagree with the audit trail.
package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// Metrics holds the collectors.
type Metrics struct {
	reg       *prometheus.Registry
	calls     *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	filters   *prometheus.CounterVec
	rules     *prometheus.CounterVec
	auditLag  prometheus.Histogram
	admin     *prometheus.CounterVec
	events    *prometheus.CounterVec
	restarts  *prometheus.Desc
	unused    *prometheus.Desc
	mu        sync.Mutex
	used      map[string]bool
	scripts   func() []string       // registered scripts of the set in force
	restartsF func() map[string]int // compartment → restarts
}

// New registers every collector. scripts lists the registry in force and
// restarts the supervisor's restart counts; both are read at scrape time.
func New(scripts func() []string, restarts func() map[string]int) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e2sgate_gate_calls_total",
			Help: "Calls the gate agent decided, by script and decision."}, []string{"script", "decision"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "e2sgate_gate_call_seconds",
			Help:    "Time from a call's arrival at the gate agent to its answer (decision, filters, forward, durable audit), by decision.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18)}, []string{"decision"}),
		filters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e2sgate_filter_hits_total",
			Help: "Filters that acted on a call: request filters that refused it and response filters that changed the answer."}, []string{"filter"}),
		rules: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e2sgate_policy_rule_hits_total",
			Help: "Decisions by the rule (reason id) that made them."}, []string{"rule"}),
		auditLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "e2sgate_audit_lag_seconds",
			Help:    "From a call's arrival to its audit record being durable and read back by the supervisor.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 2, 14)}),
		admin: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e2sgate_admin_commands_total",
			Help: "Admin commands by command and decision."}, []string{"command", "decision"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e2sgate_audit_events_total",
			Help: "Audit records that are events reported to the gate agent, not its decisions, by who reported them, kind and reason."}, []string{"origin", "kind", "reason"}),
		restarts: prometheus.NewDesc("e2sgate_compartment_restarts_total", "Restarts of a compartment by the supervisor.", []string{"compartment"}, nil),
		unused:   prometheus.NewDesc("e2sgate_registry_entry_unused", "1 for every registered script no call has used since the supervisor started.", []string{"script"}, nil),
		used:     map[string]bool{},
		scripts:  scripts, restartsF: restarts,
	}
	m.reg.MustRegister(m.calls, m.latency, m.filters, m.rules, m.auditLag, m.admin, m.events, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Describe implements prometheus.Collector for the scrape-time metrics.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.restarts
	ch <- m.unused
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	if m.restartsF != nil {
		for c, n := range m.restartsF() {
			ch <- prometheus.MustNewConstMetric(m.restarts, prometheus.CounterValue, float64(n), c)
		}
	}
	if m.scripts != nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, s := range m.scripts() {
			if !m.used[s] {
				ch <- prometheus.MustNewConstMetric(m.unused, prometheus.GaugeValue, 1, s)
			}
		}
	}
}

// Gate counts one gate decision from its audit record, or one event
// (Record.Event set) apart from the decisions; now is when the record was
// read back.
func (m *Metrics) Gate(r auditlog.Record, now time.Time) {
	if r.Caller == "admin" || r.Decision == "" {
		return
	}
	if r.Event != "" { // reported to the gate, not decided by it
		m.events.WithLabelValues(r.Event, r.Script, r.Reason).Inc()
		return
	}
	n := float64(max(1, r.Count)) // a record of refusals over a caller's limits stands for Count calls
	m.calls.WithLabelValues(r.Script, r.Decision).Add(n)
	m.latency.WithLabelValues(r.Decision).Observe(float64(r.LatencyUS) / 1e6)
	if r.Reason != "" {
		m.rules.WithLabelValues(r.Reason).Add(n)
	}
	for _, f := range r.Filters {
		m.filters.WithLabelValues(f).Inc()
	}
	if len(r.Reason) > 4 && r.Reason[:4] == "flt." {
		m.filters.WithLabelValues(r.Reason[4:]).Inc()
	}
	if !r.Time.IsZero() {
		m.auditLag.Observe(now.Sub(r.Time).Seconds())
	}
	m.mu.Lock()
	m.used[r.Script] = true
	m.mu.Unlock()
}

// Admin counts one admin command.
func (m *Metrics) Admin(command, decision string) {
	m.admin.WithLabelValues(command, decision).Inc()
}

// Text is the exposition in the Prometheus text format.
func (m *Metrics) Text() ([]byte, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// Serve serves /metrics on a unix socket at path that only root can use,
// until ctx ends.
func (m *Metrics) Serve(ctx context.Context, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("metrics socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("metrics socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("metrics socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics socket: %w", err)
	}
	return nil
}

// Scripts is a helper for New: the sorted keys of a registry map.
func Scripts[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
