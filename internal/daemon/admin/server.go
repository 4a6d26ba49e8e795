package admin

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// Caller is who is on the other end of the admin socket, from SO_PEERCRED
// (never from anything the client says).
type Caller struct {
	UID, GID, PID int
	Name          string
	Roles         []string
}

func (c Caller) String() string {
	if c.Name == "" {
		return fmt.Sprintf("uid:%d", c.UID)
	}
	return fmt.Sprintf("uid:%d(%s)", c.UID, c.Name)
}

// Handler carries out an authorised command.
type Handler func(ctx context.Context, c Caller, args json.RawMessage) (any, error)

// Command is one admin command. Check, for two-person commands, validates
// the arguments when the proposal is made (so a bad policy is refused
// before anyone approves it) and returns a summary of exactly what
// approving it will do.
//
// A two-person command that changes shared state (the policy in force)
// names it: State describes it as it is now, and Group names it. The
// proposal records State's answer; it runs only if the answer is the same
// at approval, and only one proposal per group may be pending.
type Command struct {
	Run   Handler
	Check func(ctx context.Context, c Caller, args json.RawMessage) (string, error)
	Group string
	State func(ctx context.Context) (string, error)
}

// Appender takes audit records (an *auditlog.Log).
type Appender interface {
	Append(auditlog.Record) error
}

// Config is what the server needs.
type Config struct {
	Audit     Appender
	Roles     *RoleBook
	Authz     *Authorizer
	Proposals *Proposals
	AuditLogs map[string]string // "gate", "admin" → log file
	PubKey    string            // verifier key of the audit checkpoints
	Explain   *Explainer
	Accounts  AccountDB // the system's account database; SystemAccounts if nil
	Log       *slog.Logger
}

// Server answers admin commands.
type Server struct {
	cfg  Config
	mu   sync.RWMutex
	cmds map[string]Command

	// stateMu serialises proposing and carrying out the commands that
	// change shared state, so that an approval's check of the state and
	// the change itself are one step.
	stateMu sync.Mutex
	conns   connLimits
	refused refusals
}

// New returns a server with the built-in commands (whoami, proposals,
// approve, reject, role.*, audit.*, explain); Register adds the rest.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Accounts == nil {
		cfg.Accounts = SystemAccounts
	}
	s := &Server{cfg: cfg, cmds: map[string]Command{}}
	s.builtins()
	return s
}

// Register adds or replaces a command.
func (s *Server) Register(name string, c Command) {
	s.mu.Lock()
	s.cmds[name] = c
	s.mu.Unlock()
}

func (s *Server) command(name string) (Command, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.cmds[name]
	return c, ok
}

// Listen opens the admin socket at path. Any local account may connect:
// the server learns who it is from the kernel before reading anything and
// refuses accounts without a role at once (see Serve).
func Listen(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return l, nil
}

// Bounds of the admin socket. A connection's peer is identified
// (SO_PEERCRED) before anything is read: a uid without a role, and a role
// holder over maxConnsPerUID, is answered at once without reading, and
// such refusals are audited as one record per uid and refusalWindow.
const (
	maxConnsPerUID = 4
	maxConns       = 64 // every connection being handled, refusals included
	readTimeout    = 10 * time.Second
	commandTimeout = 2 * time.Minute
	refusalWindow  = time.Minute
)

// Serve answers connections on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	go func() { <-ctx.Done(); l.Close() }()
	var wg sync.WaitGroup
	defer func() { wg.Wait(); s.flushRefusals() }()
	slots := make(chan struct{}, maxConns)
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("admin socket: %w", err)
		}
		select {
		case slots <- struct{}{}:
		default:
			c.Close() // full: too many at once to even identify
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			defer c.Close()
			s.serveConn(ctx, c)
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, conn net.Conn) {
	answer := func(r *Response) {
		conn.SetWriteDeadline(time.Now().Add(readTimeout))
		b, _ := json.Marshal(r)
		conn.Write(append(b, '\n'))
	}
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		answer(&Response{Error: "not a unix socket"})
		return
	}
	cred, err := peerCred(uc)
	if err != nil {
		answer(&Response{Error: "cannot identify the caller"})
		return
	}
	c := Caller{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)}
	a, known := s.cfg.Roles.Lookup(c.UID)
	if !known || len(a.Roles) == 0 {
		s.refuse(c, "adm.no_role")
		answer(&Response{Reason: "adm.no_role", Error: "denied: your account has no role (root only installs); nothing was read"})
		return
	}
	c.Name = a.Name
	if !s.conns.acquire(c.UID) {
		s.refuse(c, "adm.busy")
		answer(&Response{Reason: "adm.busy", Error: fmt.Sprintf("denied: your account already has %d admin connections open; wait for them to finish", maxConnsPerUID)})
		return
	}
	defer s.conns.release(c.UID)
	conn.SetReadDeadline(time.Now().Add(readTimeout))
	line, err := bufio.NewReaderSize(io.LimitReader(conn, maxRequest+1), 64<<10).ReadBytes('\n')
	if err != nil {
		msg := fmt.Sprintf("%v: read request: %v", ErrBadRequest, err)
		if len(line) > maxRequest {
			msg = fmt.Sprintf("%v: the request is larger than %d bytes", ErrBadRequest, maxRequest)
		}
		answer(&Response{Error: msg, Reason: "adm.failed"})
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		answer(&Response{Error: fmt.Sprintf("%v: %v", ErrBadRequest, err), Reason: "adm.failed"})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	resp := s.Do(ctx, c, req)
	conn.SetWriteDeadline(time.Now().Add(readTimeout))
	b, _ := json.Marshal(resp)
	conn.Write(append(b, '\n'))
}

// connLimits counts each uid's open connections.
type connLimits struct {
	mu sync.Mutex
	n  map[int]int
}

func (l *connLimits) acquire(uid int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[int]int{}
	}
	if l.n[uid] >= maxConnsPerUID {
		return false
	}
	l.n[uid]++
	return true
}

func (l *connLimits) release(uid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[uid]--; l.n[uid] <= 0 {
		delete(l.n, uid)
	}
}

// refusals aggregates the connections refused before reading: the first
// of a uid and reason is audited at once, the rest are counted and written
// as one record when the next refusal comes after refusalWindow, or when
// the server stops.
type refusals struct {
	mu sync.Mutex
	m  map[refusalKey]*refusalCount
}

type refusalKey struct {
	uid    int
	reason string
}

type refusalCount struct {
	since time.Time
	n     int // refused since, not yet audited
}

func (s *Server) refuse(c Caller, reason string) {
	now := time.Now()
	k := refusalKey{c.UID, reason}
	s.refused.mu.Lock()
	if s.refused.m == nil {
		s.refused.m = map[refusalKey]*refusalCount{}
	}
	rc := s.refused.m[k]
	switch {
	case rc == nil:
		s.refused.m[k] = &refusalCount{since: now}
		s.refused.mu.Unlock()
		s.auditRefusals(c.String(), reason, 1, now, "refused before reading the request; further refusals of this uid are counted into one record")
		return
	case now.Sub(rc.since) < refusalWindow:
		rc.n++
		s.refused.mu.Unlock()
		return
	}
	n, since := rc.n+1, rc.since
	rc.since, rc.n = now, 0
	s.refused.mu.Unlock()
	s.auditRefusals(c.String(), reason, n, since, "refused before reading the request")
}

func (s *Server) flushRefusals() {
	s.refused.mu.Lock()
	m := s.refused.m
	s.refused.m = nil
	s.refused.mu.Unlock()
	for k, rc := range m {
		if rc.n > 0 {
			s.auditRefusals(Caller{UID: k.uid}.String(), k.reason, rc.n, rc.since, "refused before reading the request")
		}
	}
}

func (s *Server) auditRefusals(user, reason string, n int, since time.Time, note string) {
	s.audit(auditlog.Record{Time: time.Now().UTC(), ReqID: newID(), Caller: "admin", Script: "e2sctl (connection)", User: user,
		Decision: "deny", Reason: reason, Detail: fmt.Sprintf("%d connection(s) since %s %s", n, since.UTC().Format(time.RFC3339), note)})
}

// May reports whether c holds the authorization of command.
func (s *Server) May(ctx context.Context, c Caller, command string) bool {
	d, err := s.cfg.Authz.Decide(ctx, c.UID, command)
	return err == nil && d.Allow
}

// Do authorises, audits and carries out one request from c.
func (s *Server) Do(ctx context.Context, c Caller, req Request) *Response {
	rec := auditlog.Record{Time: time.Now().UTC(), ReqID: newID(), Caller: "admin", Script: "e2sctl " + req.Command, User: c.String()}
	// A role account is one person: the system must know its uid by the
	// same name as the role book, or it holds no role.
	if a, ok := s.cfg.Roles.Lookup(c.UID); ok {
		c.Name = a.Name
		rec.User = c.String()
		if err := checkAccount(s.cfg.Accounts, a); err != nil {
			rec.Decision, rec.Reason, rec.Detail = "deny", "adm.account_mismatch", err.Error()
			if err := s.audit(rec); err != nil {
				return unwritable()
			}
			return &Response{Reason: "adm.account_mismatch", Error: fmt.Sprintf("denied: %v; your account holds no role until root fixes the role book or the account", err)}
		}
	}
	// approve and reject need the authorization of the proposal's command.
	authCmd := req.Command
	var prop Proposal
	if req.Command == "approve" || req.Command == "reject" {
		var a struct {
			ID string `json:"id"`
		}
		json.Unmarshal(req.Args, &a)
		p, ok := s.cfg.Proposals.Get(a.ID)
		if !ok {
			rec.Decision, rec.Reason, rec.Detail = "deny", "adm.failed", "no proposal "+a.ID
			s.audit(rec)
			return &Response{Error: fmt.Sprintf("%v: %q", ErrNoProposal, a.ID), Reason: "adm.failed"}
		}
		prop, authCmd = p, p.Command
		rec.Target = p.Command + " " + p.ID
	}
	d, err := s.cfg.Authz.Decide(ctx, c.UID, authCmd)
	if err != nil {
		d = Decision{Reason: "adm.failed"}
		rec.Detail = err.Error()
	}
	c.Roles = d.Roles
	if _, known := s.command(req.Command); !known && d.Allow {
		d = Decision{Reason: "adm.unknown_command"}
	}
	rec.Reason = d.Reason
	if !d.Allow {
		rec.Decision = "deny"
		if d.Authorization != "" {
			rec.Detail = "missing authorization " + d.Authorization
		}
		if err := s.audit(rec); err != nil {
			return unwritable()
		}
		return &Response{Reason: d.Reason, Authorization: d.Authorization, Error: denial(req.Command, authCmd, d)}
	}
	rec.Decision = "allow"
	rec.Detail = summarizeArgs(req.Args)
	if err := s.audit(rec); err != nil {
		return unwritable()
	}
	cmd, _ := s.command(req.Command)

	switch {
	case req.Command == "approve" || req.Command == "reject":
		return s.decideProposal(ctx, c, req.Command, prop, rec)
	case d.TwoPerson:
		return s.propose(ctx, c, req, cmd, d, rec)
	}
	out, err := cmd.Run(ctx, c, req.Args)
	if err != nil {
		s.cfg.Log.Warn("admin command failed", "command", req.Command, "user", c.String(), "error", err)
		return &Response{Error: err.Error(), Reason: reasonOf(err), Authorization: d.Authorization}
	}
	return result(out, d.Authorization)
}

// propose records a two-person command, with the state it was computed
// against if it changes shared state.
func (s *Server) propose(ctx context.Context, c Caller, req Request, cmd Command, d Decision, rec auditlog.Record) *Response {
	fail := func(err error) *Response {
		reason := reasonOf(err)
		s.outcome(rec, "deny", reason, err.Error())
		return &Response{Error: err.Error(), Reason: reason, Authorization: d.Authorization}
	}
	if cmd.Group != "" {
		s.stateMu.Lock()
		defer s.stateMu.Unlock()
	}
	var basis string
	if cmd.State != nil {
		var err error
		if basis, err = cmd.State(ctx); err != nil {
			return fail(err)
		}
	}
	summary := req.Command
	if cmd.Check != nil {
		var err error
		if summary, err = cmd.Check(ctx, c, req.Args); err != nil {
			return fail(err)
		}
	}
	p, err := s.cfg.Proposals.Add(c, req.Command, req.Args, summary, cmd.Group, basis)
	if err != nil {
		return fail(err)
	}
	detail := "proposal " + p.ID + ": " + summary
	if basis != "" {
		detail += " [against " + basis + "]"
	}
	s.outcome(rec, "allow", "adm.proposed", detail)
	return &Response{OK: true, Reason: "adm.proposed", Authorization: d.Authorization, Proposal: p}
}

func (s *Server) decideProposal(ctx context.Context, c Caller, verb string, p Proposal, rec auditlog.Record) *Response {
	state := "approved"
	if verb == "reject" {
		state = "rejected"
	}
	cmd, _ := s.command(p.Command)
	if state == "approved" && cmd.Group != "" {
		s.stateMu.Lock()
		defer s.stateMu.Unlock()
	}
	p, err := s.cfg.Proposals.Take(p.ID, c, state)
	if err != nil {
		reason := reasonOf(err)
		s.outcome(rec, "deny", reason, err.Error())
		return &Response{Error: err.Error(), Reason: reason}
	}
	if state == "rejected" {
		s.outcome(rec, "allow", "adm.allowed", "rejected proposal "+p.ID)
		return result(p, "")
	}
	if err := s.stillValid(ctx, p, cmd); err != nil {
		s.cfg.Proposals.Void(p.ID, err)
		reason := reasonOf(err)
		s.outcome(rec, "deny", reason, "proposal "+p.ID+" not carried out: "+err.Error())
		return &Response{Error: fmt.Sprintf("proposal %s was not carried out and is void: %v", p.ID, err), Reason: reason}
	}
	out, err := cmd.Run(ctx, Caller{UID: p.UID, Name: p.Person}, p.Args)
	s.cfg.Proposals.Finish(p.ID, err)
	if err != nil {
		s.outcome(rec, "deny", "adm.failed", "approved proposal "+p.ID+" failed: "+err.Error())
		return &Response{Error: fmt.Sprintf("approved, but carrying it out failed: %v", err), Reason: "adm.failed"}
	}
	s.outcome(rec, "allow", "adm.allowed", fmt.Sprintf("approved proposal %s by %s, carried out: %s", p.ID, p.Proposer, p.Summary))
	return result(out, "")
}

// stillValid checks, at approval, what the proposal was made on: the
// proposer is still the same person and holds the authorization, and the
// state it was computed against still holds.
func (s *Server) stillValid(ctx context.Context, p Proposal, cmd Command) error {
	a, ok := s.cfg.Roles.Lookup(p.UID)
	if !ok || p.Person == "" || a.Name != p.Person {
		return fmt.Errorf("%w: %s is no longer in the role book as %q", ErrProposerLost, p.Proposer, p.Person)
	}
	if err := checkAccount(s.cfg.Accounts, a); err != nil {
		return fmt.Errorf("%w: %w", ErrProposerLost, err)
	}
	if !s.May(ctx, Caller{UID: p.UID}, p.Command) {
		return fmt.Errorf("%w: %s no longer holds the authorization of %s", ErrProposerLost, p.Proposer, p.Command)
	}
	if cmd.State == nil {
		return nil
	}
	now, err := cmd.State(ctx)
	if err != nil {
		return fmt.Errorf("read the state in force: %w", err)
	}
	if now != p.Basis {
		return fmt.Errorf("%w: it was computed against %s, but now %s; nothing was changed. Read the state in force (e2sctl policy show) and propose again if it is still wanted",
			ErrStale, p.Basis, now)
	}
	return nil
}

// reasonOf maps an error to its reason id (admin-reasons.yaml).
func reasonOf(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{ErrSamePerson, "adm.same_person"}, {ErrExpired, "adm.expired"}, {ErrStale, "adm.stale"},
		{ErrPending, "adm.pending"}, {ErrProposerLost, "adm.proposer_lost"},
		{ErrSecondAccount, "adm.second_account"}, {ErrAccountMismatch, "adm.account_mismatch"},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return "adm.failed"
}

func unwritable() *Response {
	return &Response{Error: "the admin audit log is unwritable; nothing is done until it is", Reason: "adm.audit_unavailable"}
}

func (s *Server) audit(rec auditlog.Record) error {
	if err := s.cfg.Audit.Append(rec); err != nil {
		s.cfg.Log.Error("admin audit log unwritable; refusing commands", "error", err)
		return err
	}
	return nil
}

// outcome audits what became of an authorised command.
func (s *Server) outcome(rec auditlog.Record, decision, reason, detail string) {
	rec.Time, rec.Decision, rec.Reason, rec.Detail = time.Now().UTC(), decision, reason, detail
	s.audit(rec)
}

func denial(cmd, authCmd string, d Decision) string {
	what := "e2sctl " + strings.ReplaceAll(cmd, ".", " ")
	if authCmd != cmd {
		what += " of a " + authCmd + " proposal"
	}
	switch d.Reason {
	case "adm.no_role":
		return fmt.Sprintf("denied: %s needs authorization %q; your account has no role (root only installs)", what, d.Authorization)
	case "adm.authorization_missing":
		return fmt.Sprintf("denied: %s needs authorization %q, which none of your roles (%s) grants", what, d.Authorization, strings.Join(d.Roles, ", "))
	case "adm.unknown_command":
		return fmt.Sprintf("denied: unknown command %q", cmd)
	}
	return "denied: " + d.Reason
}

func result(v any, authz string) *Response {
	b, err := json.Marshal(v)
	if err != nil {
		return &Response{Error: err.Error(), Reason: "adm.failed"}
	}
	return &Response{OK: true, Reason: "adm.allowed", Authorization: authz, Result: b}
}

// summarizeArgs keeps the audit record short: policy files by name only.
func summarizeArgs(args json.RawMessage) string {
	if len(args) == 0 {
		return ""
	}
	var m map[string]any
	if json.Unmarshal(args, &m) != nil {
		return ""
	}
	if files, ok := m["files"].(map[string]any); ok {
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		m["files"] = names
	}
	b, _ := json.Marshal(m)
	if len(b) > 512 {
		b = b[:512]
	}
	return string(b)
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func peerCred(c *net.UnixConn) (*syscall.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}
