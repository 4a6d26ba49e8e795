package lifecycle

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/daemon/admin"
)

// A shadow evaluates a candidate policy set beside the one in force on live
// calls, without enforcing it: it follows the gate agent's audit log from
// the moment it starts and decides every new call again with the
// candidate, keeping each call where the two disagree.
//
// Its report is read by secadmins, who may not read the audit trail, and
// the candidate is anyone's Rego. So the report never carries audit data
// through the candidate: a verdict is allow, deny, or deny with a reason
// id of the reasons catalogue in force (never the candidate's free text),
// and the recorded user is an input only when the requester may read the
// audit trail, in which case the report is only for those who may.
type shadow struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	report ShadowReport
}

// ShadowReport is what `e2sctl policy shadow-report` prints.
type ShadowReport struct {
	Digest        string            `json:"digest"`
	Started       time.Time         `json:"started"`
	Calls         int               `json:"calls"`
	Disagreements []ShadowDisagreed `json:"disagreements"`
	Dropped       int               `json:"dropped,omitempty"` // beyond the first maxShadow
	UserInput     bool              `json:"user_input"`        // the recorded users were the candidate's input
	Error         string            `json:"error,omitempty"`
}

// ShadowDisagreed is one call the candidate would have decided otherwise.
type ShadowDisagreed struct {
	Time      time.Time         `json:"time"` // to the minute
	Caller    string            `json:"caller"`
	Script    string            `json:"script"`
	Active    gateagent.Verdict `json:"active"`
	Candidate gateagent.Verdict `json:"candidate"`
}

// maxShadow bounds the disagreements a report keeps.
const maxShadow = 1000

// shadows holds the one running shadow evaluation.
type shadows struct {
	mu  sync.Mutex
	cur *shadow
}

// StartShadow checks files and evaluates them in the shadow of the set in
// force on every call audited from now on, replacing a shadow already
// running. The candidate sees the recorded user only if users is set. The
// evaluation runs until StopShadow or Close, not until ctx ends.
func (s *Store) StartShadow(ctx context.Context, files map[string]string, users bool) (*ShadowReport, error) {
	r := s.Check(ctx, files)
	if !r.OK {
		return nil, fmt.Errorf("%w: %s", ErrRefused, r.Error)
	}
	cand, err := gateagent.LoadPolicySetFS(ctx, mapFS(files), s.cfg.Compartments)
	if err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	reasons, err := admin.LoadReasons(os.DirFS(s.active()), "reasons.yaml")
	if err != nil {
		return nil, fmt.Errorf("shadow: the reasons catalogue in force: %w", err)
	}
	path := s.cfg.AuditLog
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("shadow: %w", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	sh := &shadow{cancel: cancel, done: make(chan struct{}),
		report: ShadowReport{Digest: r.Digest, Started: time.Now().UTC(), Disagreements: []ShadowDisagreed{}, UserInput: users}}
	s.shadows.stop()
	s.shadows.mu.Lock()
	s.shadows.cur = sh
	s.shadows.mu.Unlock()
	labels := s.cfg.Labels
	go func() {
		defer close(sh.done)
		err := auditlog.Follow(sctx, path, st.Size(), func(rec auditlog.Record) {
			active, ok := gateagent.RecordedVerdict(rec.Reason, rec.Target)
			if !ok {
				return
			}
			user := ""
			if users {
				user = rec.User
			}
			v, err := gateagent.ShadowVerdict(sctx, cand, labels, rec.Caller, rec.Script, user)
			if err != nil {
				v = "deny (pol.error)" // as the gate would decide; the error text is the candidate's
			}
			sh.record(rec, active, catalogued(v, reasons))
		})
		if err != nil {
			sh.mu.Lock()
			sh.report.Error = err.Error()
			sh.mu.Unlock()
		}
	}()
	return s.ShadowReport()
}

// catalogued keeps a verdict's reason only if it is a reason id of the
// catalogue; any other text the candidate put there becomes a bare deny.
func catalogued(v gateagent.Verdict, reasons map[string]string) gateagent.Verdict {
	id, ok := strings.CutPrefix(string(v), "deny (")
	if !ok {
		if v == "allow" || v == "unregistered" {
			return v
		}
		return "deny"
	}
	if id, ok = strings.CutSuffix(id, ")"); ok {
		if _, known := reasons[id]; known {
			return v
		}
	}
	return "deny"
}

// record counts one call and keeps it if the verdicts differ.
func (sh *shadow) record(rec auditlog.Record, active, candidate gateagent.Verdict) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.report.Calls++
	if candidate == active {
		return
	}
	if len(sh.report.Disagreements) >= maxShadow {
		sh.report.Dropped++
		return
	}
	// A secadmin reads this without audit.read: which call was decided
	// differently, never whose (no req id, no user).
	sh.report.Disagreements = append(sh.report.Disagreements, ShadowDisagreed{Time: rec.Time.Truncate(time.Minute),
		Caller: rec.Caller, Script: rec.Script, Active: active, Candidate: candidate})
}

// ShadowReport is the running shadow's report so far.
func (s *Store) ShadowReport() (*ShadowReport, error) {
	s.shadows.mu.Lock()
	sh := s.shadows.cur
	s.shadows.mu.Unlock()
	if sh == nil {
		return nil, ErrNoShadow
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.report
	r.Disagreements = slices.Clone(r.Disagreements)
	return &r, nil
}

// StopShadow ends the running shadow and returns its last report.
func (s *Store) StopShadow() (*ShadowReport, error) {
	r, err := s.ShadowReport()
	s.shadows.stop()
	return r, err
}

func (ss *shadows) stop() {
	ss.mu.Lock()
	sh := ss.cur
	ss.cur = nil
	ss.mu.Unlock()
	if sh != nil {
		sh.cancel()
		<-sh.done
	}
}
