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
// before anyone approves it) and returns a one-line summary.
type Command struct {
	Run   Handler
	Check func(ctx context.Context, c Caller, args json.RawMessage) (string, error)
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
	Log       *slog.Logger
}

// Server answers admin commands.
type Server struct {
	cfg  Config
	mu   sync.RWMutex
	cmds map[string]Command
}

// New returns a server with the built-in commands (whoami, proposals,
// approve, reject, role.*, audit.*, explain); Register adds the rest.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
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

// Listen opens the admin socket at path. Any local account may connect;
// what it may do is decided per command from its uid.
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

// Serve answers connections on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	go func() { <-ctx.Done(); l.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("admin socket: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Minute))
			resp := s.serveConn(ctx, c)
			b, _ := json.Marshal(resp)
			c.Write(append(b, '\n'))
		}()
	}
}

func (s *Server) serveConn(ctx context.Context, conn net.Conn) *Response {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return &Response{Error: "not a unix socket"}
	}
	cred, err := peerCred(uc)
	if err != nil {
		return &Response{Error: "cannot identify the caller"}
	}
	line, err := bufio.NewReaderSize(io.LimitReader(conn, maxRequest), 64<<10).ReadBytes('\n')
	if err != nil {
		return &Response{Error: fmt.Sprintf("%v: read request: %v", ErrBadRequest, err)}
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return &Response{Error: fmt.Sprintf("%v: %v", ErrBadRequest, err)}
	}
	c := Caller{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)}
	if a, ok := s.cfg.Roles.Lookup(c.UID); ok {
		c.Name = a.Name
	}
	return s.Do(ctx, c, req)
}

// Do authorises, audits and carries out one request from c.
func (s *Server) Do(ctx context.Context, c Caller, req Request) *Response {
	rec := auditlog.Record{Time: time.Now().UTC(), ReqID: newID(), Caller: "admin", Script: "e2sctl " + req.Command, User: c.String()}
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
			return &Response{Error: "the admin audit log is unwritable; nothing is done until it is", Reason: "adm.audit_unavailable"}
		}
		return &Response{Reason: d.Reason, Authorization: d.Authorization, Error: denial(req.Command, authCmd, d)}
	}
	rec.Decision = "allow"
	rec.Detail = summarizeArgs(req.Args)
	if err := s.audit(rec); err != nil {
		return &Response{Error: "the admin audit log is unwritable; nothing is done until it is", Reason: "adm.audit_unavailable"}
	}
	cmd, _ := s.command(req.Command)

	switch {
	case req.Command == "approve" || req.Command == "reject":
		return s.decideProposal(ctx, c, req.Command, prop, rec)
	case d.TwoPerson:
		summary := req.Command
		if cmd.Check != nil {
			if summary, err = cmd.Check(ctx, c, req.Args); err != nil {
				s.outcome(rec, "deny", "adm.failed", err.Error())
				return &Response{Error: err.Error(), Reason: "adm.failed"}
			}
		}
		p, err := s.cfg.Proposals.Add(c, req.Command, req.Args, summary)
		if err != nil {
			return &Response{Error: err.Error(), Reason: "adm.failed"}
		}
		s.outcome(rec, "allow", "adm.proposed", "proposal "+p.ID+": "+summary)
		return &Response{OK: true, Reason: "adm.proposed", Authorization: d.Authorization, Proposal: p}
	}
	out, err := cmd.Run(ctx, c, req.Args)
	if err != nil {
		s.cfg.Log.Warn("admin command failed", "command", req.Command, "user", c.String(), "error", err)
		return &Response{Error: err.Error(), Reason: "adm.failed", Authorization: d.Authorization}
	}
	return result(out, d.Authorization)
}

func (s *Server) decideProposal(ctx context.Context, c Caller, verb string, p Proposal, rec auditlog.Record) *Response {
	state := "approved"
	if verb == "reject" {
		state = "rejected"
	}
	p, err := s.cfg.Proposals.Take(p.ID, c, state)
	if err != nil {
		reason := "adm.failed"
		switch {
		case errors.Is(err, ErrSamePerson):
			reason = "adm.same_person"
		case errors.Is(err, ErrExpired):
			reason = "adm.expired"
		}
		s.outcome(rec, "deny", reason, err.Error())
		return &Response{Error: err.Error(), Reason: reason}
	}
	if state == "rejected" {
		s.outcome(rec, "allow", "adm.allowed", "rejected proposal "+p.ID)
		return result(p, "")
	}
	cmd, _ := s.command(p.Command)
	proposer := Caller{UID: p.UID, Name: strings.TrimSuffix(strings.TrimPrefix(p.Proposer, fmt.Sprintf("uid:%d(", p.UID)), ")")}
	out, err := cmd.Run(ctx, proposer, p.Args)
	s.cfg.Proposals.Finish(p.ID, err)
	if err != nil {
		s.outcome(rec, "deny", "adm.failed", "approved proposal "+p.ID+" failed: "+err.Error())
		return &Response{Error: fmt.Sprintf("approved, but carrying it out failed: %v", err), Reason: "adm.failed"}
	}
	s.outcome(rec, "allow", "adm.allowed", fmt.Sprintf("approved proposal %s by %s, carried out: %s", p.ID, p.Proposer, p.Summary))
	return result(out, "")
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
