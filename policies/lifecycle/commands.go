package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/daemon/admin"
)

// Args carry a policy set's files (read by e2sctl as the operator, never
// by root from a path the operator names).
type Args struct {
	Files map[string]string `json:"files"`
}

// Register serves the policy commands on the admin socket. Activating a
// set (propose) and rolling back take two people: their Check is what the
// second person approves.
func (s *Store) Register(srv *admin.Server) {
	srv.Register("policy.show", admin.Command{Run: func(context.Context, admin.Caller, json.RawMessage) (any, error) {
		return s.State()
	}})
	srv.Register("policy.check", admin.Command{Run: func(ctx context.Context, _ admin.Caller, args json.RawMessage) (any, error) {
		files, err := policyFiles(args)
		if err != nil {
			return nil, err
		}
		return s.Check(ctx, files), nil
	}})
	// An activation and a rollback are computed against the set in force
	// (their Group and State): the approver reads what changes, and the
	// approval carries it out only if that set is still in force.
	srv.Register("policy.propose", admin.Command{
		Group: "policy",
		State: func(context.Context) (string, error) { return s.Basis() },
		Check: func(ctx context.Context, _ admin.Caller, args json.RawMessage) (string, error) {
			files, err := policyFiles(args)
			if err != nil {
				return "", err
			}
			r := s.Check(ctx, files)
			if !r.OK {
				return "", fmt.Errorf("%w: %s", ErrRefused, r.Error)
			}
			st, err := s.State()
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("activate policy set %s (%d scripts) as version %d in place of version %d: %s",
				r.Digest[:16], r.Scripts, st.Versions[len(st.Versions)-1]+1, st.Active, changeList(r.Changes)), nil
		},
		Run: func(ctx context.Context, _ admin.Caller, args json.RawMessage) (any, error) {
			files, err := policyFiles(args)
			if err != nil {
				return nil, err
			}
			return s.Activate(ctx, files)
		},
	})
	// A shadow decides with the recorded user only for a requester who may
	// read the audit trail; its report is then theirs alone.
	readsAudit := func(ctx context.Context, c admin.Caller) bool { return srv.May(ctx, c, "audit.search") }
	srv.Register("policy.shadow", admin.Command{Run: func(ctx context.Context, c admin.Caller, args json.RawMessage) (any, error) {
		files, err := policyFiles(args)
		if err != nil {
			return nil, err
		}
		return s.StartShadow(ctx, files, readsAudit(ctx, c))
	}})
	srv.Register("policy.shadow_report", admin.Command{Run: func(ctx context.Context, c admin.Caller, _ json.RawMessage) (any, error) {
		return badRequest(withheld(s.ShadowReport())(readsAudit(ctx, c)))
	}})
	srv.Register("policy.shadow_stop", admin.Command{Run: func(ctx context.Context, c admin.Caller, _ json.RawMessage) (any, error) {
		r, err := badRequest(withheld(s.StopShadow())(readsAudit(ctx, c)))
		if errors.Is(err, ErrUsersWithheld) {
			return map[string]string{"stopped": "yes", "report": err.Error()}, nil
		}
		return r, err
	}})
	srv.Register("policy.rollback", admin.Command{
		Group: "policy",
		State: func(context.Context) (string, error) { return s.Basis() },
		Check: func(ctx context.Context, _ admin.Caller, _ json.RawMessage) (string, error) {
			from, to, changes, err := s.RollbackPlan(ctx)
			if errors.Is(err, ErrNoEarlier) {
				return "", fmt.Errorf("%w: %w", admin.ErrBadRequest, err)
			}
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("roll the policy back from version %d to version %d: %s", from, to, changeList(changes)), nil
		},
		Run: func(ctx context.Context, _ admin.Caller, _ json.RawMessage) (any, error) {
			return badRequest(s.Rollback(ctx))
		},
	})
}

// maxListed bounds the changes a proposal's summary lists.
const maxListed = 40

// changeList says which calls a change decides otherwise, one per line.
func changeList(cs []gateagent.Change) string {
	if len(cs) == 0 {
		return "no call is decided otherwise"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d calls change", len(cs))
	for i, c := range cs {
		if i == maxListed {
			fmt.Fprintf(&b, "\n  … and %d more (e2sctl policy check DIR lists them all)", len(cs)-maxListed)
			break
		}
		fmt.Fprintf(&b, "\n  %s calls %s: %s → %s", c.Caller, c.Script, c.Before, c.After)
	}
	return b.String()
}

// withheld refuses the report of a shadow that decided with the recorded
// users to a requester who may not read the audit trail.
func withheld(r *ShadowReport, err error) func(readsAudit bool) (*ShadowReport, error) {
	return func(readsAudit bool) (*ShadowReport, error) {
		if err == nil && r.UserInput && !readsAudit {
			return nil, fmt.Errorf("%w: %w", admin.ErrBadRequest, ErrUsersWithheld)
		}
		return r, err
	}
}

// badRequest marks the errors that are the operator's to fix as bad
// requests; the text tells how.
func badRequest[T any](v T, err error) (T, error) {
	switch {
	case errors.Is(err, ErrNoEarlier):
		return v, fmt.Errorf("%w: %w", admin.ErrBadRequest, err)
	case errors.Is(err, ErrNoShadow):
		return v, fmt.Errorf("%w: %w; start one with e2sctl policy shadow DIR", admin.ErrBadRequest, err)
	}
	return v, err
}

// policyFiles reads the files of a request: top-level .rego and .yaml only.
func policyFiles(args json.RawMessage) (map[string]string, error) {
	var a Args
	if err := json.Unmarshal(args, &a); err != nil || len(a.Files) == 0 {
		return nil, fmt.Errorf("%w: %w", admin.ErrBadRequest, ErrNoFiles)
	}
	for n := range a.Files {
		if n != path.Base(n) || strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".rego") || strings.HasSuffix(n, ".yaml")) {
			return nil, fmt.Errorf("%w: file %q: %w", admin.ErrBadRequest, n, ErrFileName)
		}
	}
	return a.Files, nil
}
