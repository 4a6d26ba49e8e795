package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

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
	srv.Register("policy.propose", admin.Command{
		Check: func(ctx context.Context, _ admin.Caller, args json.RawMessage) (string, error) {
			files, err := policyFiles(args)
			if err != nil {
				return "", err
			}
			r := s.Check(ctx, files)
			if !r.OK {
				return "", fmt.Errorf("%w: %s", ErrRefused, r.Error)
			}
			return fmt.Sprintf("activate policy set %s (%d scripts, %d calls change)", r.Digest[:16], r.Scripts, len(r.Changes)), nil
		},
		Run: func(ctx context.Context, _ admin.Caller, args json.RawMessage) (any, error) {
			files, err := policyFiles(args)
			if err != nil {
				return nil, err
			}
			return s.Activate(ctx, files)
		},
	})
	srv.Register("policy.shadow", admin.Command{Run: func(ctx context.Context, _ admin.Caller, args json.RawMessage) (any, error) {
		files, err := policyFiles(args)
		if err != nil {
			return nil, err
		}
		return s.StartShadow(ctx, files)
	}})
	srv.Register("policy.shadow_report", admin.Command{Run: func(context.Context, admin.Caller, json.RawMessage) (any, error) {
		return badRequest(s.ShadowReport())
	}})
	srv.Register("policy.shadow_stop", admin.Command{Run: func(context.Context, admin.Caller, json.RawMessage) (any, error) {
		return badRequest(s.StopShadow())
	}})
	srv.Register("policy.rollback", admin.Command{
		Check: func(context.Context, admin.Caller, json.RawMessage) (string, error) {
			st, err := s.State()
			if err != nil {
				return "", err
			}
			if len(st.History) < 2 {
				return "", fmt.Errorf("%w: %w", admin.ErrBadRequest, ErrNoEarlier)
			}
			return fmt.Sprintf("roll the policy back from version %v to version %v", st.History[len(st.History)-1], st.History[len(st.History)-2]), nil
		},
		Run: func(ctx context.Context, _ admin.Caller, _ json.RawMessage) (any, error) {
			return badRequest(s.Rollback(ctx))
		},
	})
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
