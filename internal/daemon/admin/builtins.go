package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

func decode[T any](args json.RawMessage) (T, error) {
	var v T
	if len(args) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(args, &v); err != nil {
		return v, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return v, nil
}

func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("%w: time %q: want RFC 3339 or a duration such as 1h", ErrBadRequest, s)
	}
	return t, nil
}

func (s *Server) builtins() {
	s.cmds["whoami"] = Command{Run: func(_ context.Context, c Caller, _ json.RawMessage) (any, error) { return c, nil }}
	s.cmds["proposals"] = Command{Run: func(context.Context, Caller, json.RawMessage) (any, error) {
		return s.cfg.Proposals.List(), nil
	}}
	s.cmds["approve"] = Command{} // decided in Do
	s.cmds["reject"] = Command{}

	s.cmds["role.list"] = Command{Run: func(context.Context, Caller, json.RawMessage) (any, error) {
		return s.cfg.Roles.Accounts(), nil
	}}
	// A role change names the person: the uid's name in the system account
	// database, which must be the name the role book has for it, and a
	// person already in the book under another uid is refused.
	roleChange := func(add bool) Command {
		person := func(a RoleArgs) (string, error) {
			if a.UID <= 0 || !slices.Contains(Roles, a.Role) {
				return "", fmt.Errorf("%w: want a uid > 0 and a role of %v", ErrBadRequest, Roles)
			}
			if acc, ok := s.cfg.Roles.Lookup(a.UID); ok && !add {
				return acc.Name, nil // a revocation needs no live account
			}
			name, err := s.cfg.Accounts(a.UID)
			if err != nil {
				return "", err
			}
			if a.Name != "" && a.Name != name {
				return "", fmt.Errorf("%w: uid %d is %q in the system account database, not %q", ErrAccountMismatch, a.UID, name, a.Name)
			}
			return name, s.cfg.Roles.Person(a.UID, name)
		}
		check := func(_ context.Context, _ Caller, args json.RawMessage) (string, error) {
			a, err := decode[RoleArgs](args)
			if err != nil {
				return "", err
			}
			name, err := person(a)
			if err != nil {
				return "", err
			}
			acc, _ := s.cfg.Roles.Lookup(a.UID)
			before := slices.Clone(acc.Roles)
			after := slices.DeleteFunc(slices.Clone(before), func(r string) bool { return r == a.Role })
			verb := "revoke role " + a.Role + " from"
			if add {
				verb = "assign role " + a.Role + " to"
				after = append(after, a.Role)
			}
			return fmt.Sprintf("%s %s (uid %d): roles %v → %v", verb, name, a.UID, before, after), nil
		}
		return Command{Check: check, Run: func(ctx context.Context, _ Caller, args json.RawMessage) (any, error) {
			a, err := decode[RoleArgs](args)
			if err != nil {
				return nil, err
			}
			name, err := person(a)
			if err != nil {
				return nil, err
			}
			if err := s.cfg.Roles.Change(a.UID, name, a.Role, add); err != nil {
				return nil, err
			}
			if err := s.cfg.Authz.Reload(ctx, s.cfg.Roles); err != nil {
				return nil, err
			}
			acc, _ := s.cfg.Roles.Lookup(a.UID)
			return acc, nil
		}}
	}
	s.cmds["role.assign"] = roleChange(true)
	s.cmds["role.revoke"] = roleChange(false)

	s.cmds["audit.verify"] = Command{Run: func(context.Context, Caller, json.RawMessage) (any, error) {
		var reps []*auditlog.Report
		for _, name := range []string{"gate", "admin"} {
			p, ok := s.cfg.AuditLogs[name]
			if !ok {
				continue
			}
			rep, err := auditlog.VerifyLive(p, s.cfg.PubKey)
			if err != nil {
				return nil, fmt.Errorf("verify %s log: %w", name, err)
			}
			reps = append(reps, rep)
		}
		return reps, nil
	}}
	search := func(defLimit int) Command {
		return Command{Run: func(_ context.Context, _ Caller, args json.RawMessage) (any, error) {
			a, err := decode[AuditArgs](args)
			if err != nil {
				return nil, err
			}
			if a.Log == "" {
				a.Log = "gate"
			}
			p, ok := s.cfg.AuditLogs[a.Log]
			if !ok {
				return nil, fmt.Errorf("%w: no audit log %q (gate or admin)", ErrBadRequest, a.Log)
			}
			now := time.Now()
			f := auditlog.Filter{Compartment: a.Compartment, Decision: a.Decision, User: a.User, Script: a.Script, Reason: a.Reason, ReqID: a.ReqID}
			if f.Since, err = parseWhen(a.Since, now); err != nil {
				return nil, err
			}
			if f.Until, err = parseWhen(a.Until, now); err != nil {
				return nil, err
			}
			if a.Limit <= 0 {
				a.Limit = defLimit
			}
			return auditlog.Search(p, f, a.Limit)
		}}
	}
	s.cmds["audit.tail"] = search(20)
	s.cmds["audit.search"] = search(1000)

	s.cmds["explain"] = Command{Run: func(ctx context.Context, c Caller, args json.RawMessage) (any, error) {
		a, err := decode[struct {
			ID string `json:"id"`
		}](args)
		if err != nil {
			return nil, err
		}
		if s.cfg.Explain == nil {
			return nil, fmt.Errorf("%w: the admin socket was started without the reasons catalogue", ErrBadRequest)
		}
		if x, ok := s.cfg.Explain.Explain(a.ID); ok {
			return x, nil
		}
		// Not a reason id: an audit record's req_id, for those who may read audit.
		if !s.May(ctx, c, "audit.search") {
			return nil, fmt.Errorf("%w: %q is no reason id; explaining an audit record needs authorization \"audit.read\"", ErrBadRequest, a.ID)
		}
		for _, name := range []string{"gate", "admin"} {
			recs, err := auditlog.Search(s.cfg.AuditLogs[name], auditlog.Filter{ReqID: a.ID}, 1)
			if err == nil && len(recs) == 1 {
				return s.cfg.Explain.ExplainRecord(recs[0]), nil
			}
		}
		return nil, fmt.Errorf("%w: %q is neither a reason id nor the req_id of an audit record", ErrBadRequest, a.ID)
	}}
}
