// Package api is the admin socket's wire protocol, shared by the
// supervisor's admin server and e2sctl: one JSON request line per
// connection, one JSON answer. It links nothing of the server (no policy
// engine), so the operators' client stays small.
package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// Request is one command, one JSON line; one request per connection.
type Request struct {
	Command string          `json:"command"`
	Args    json.RawMessage `json:"args,omitempty"`
}

// Response is the answer, one JSON value.
type Response struct {
	OK            bool            `json:"ok"`
	Error         string          `json:"error,omitempty"`
	Reason        string          `json:"reason,omitempty"`        // reason id (admin-reasons.yaml)
	Authorization string          `json:"authorization,omitempty"` // the authorization the command needs
	Proposal      *Proposal       `json:"proposal,omitempty"`      // a two-person command waits for approval
	Result        json.RawMessage `json:"result,omitempty"`
}

// Proposal is a two-person command waiting for a second person. Summary
// says exactly what approving it does; Basis is the state it was computed
// against (for a policy activation or rollback: the version in force, its
// digest and the history), and it runs only while that state holds.
type Proposal struct {
	ID       string          `json:"id"`
	Command  string          `json:"command"`
	Args     json.RawMessage `json:"args,omitempty"`
	Summary  string          `json:"summary"`
	Group    string          `json:"group,omitempty"` // one pending proposal per group
	Basis    string          `json:"basis,omitempty"`
	Proposer string          `json:"proposer"`
	Person   string          `json:"person"` // the proposer's name in the role book
	UID      int             `json:"uid"`
	Created  time.Time       `json:"created"`
	Expires  time.Time       `json:"expires"`
	State    string          `json:"state"` // pending, approved, rejected, expired, failed, void
	Decider  string          `json:"decider,omitempty"`
	Result   string          `json:"result,omitempty"`
}

// MaxRequest bounds a request (policy sets travel in it; the embedded set
// is a few dozen KiB).
const MaxRequest = 1 << 20

// Call sends one request to the admin socket at path and returns the answer.
func Call(path, command string, args any) (*Response, error) {
	req := Request{Command: command}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", command, err)
		}
		req.Args = b
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	defer c.Close()
	b, _ := json.Marshal(req)
	// The server may answer (a refusal) without reading the request, so an
	// unsent request is reported only if no answer came either.
	_, werr := c.Write(append(b, '\n'))
	var resp Response
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&resp); err != nil {
		if werr != nil {
			return nil, fmt.Errorf("admin socket: send: %w", werr)
		}
		return nil, fmt.Errorf("admin socket: answer: %w", err)
	}
	return &resp, nil
}

// RoleArgs are the arguments of role.assign and role.revoke. Name, if
// given, must be the uid's name in the system account database.
type RoleArgs struct {
	UID  int    `json:"uid"`
	Name string `json:"name,omitempty"`
	Role string `json:"role"`
}

// AuditArgs are the arguments of audit.tail and audit.search.
type AuditArgs struct {
	Log         string `json:"log,omitempty"` // gate (default) or admin
	Compartment string `json:"compartment,omitempty"`
	Decision    string `json:"decision,omitempty"`
	User        string `json:"user,omitempty"`
	Script      string `json:"script,omitempty"`
	Reason      string `json:"reason,omitempty"`
	ReqID       string `json:"req_id,omitempty"`
	Since       string `json:"since,omitempty"` // RFC 3339 or a duration back from now ("1h")
	Until       string `json:"until,omitempty"`
	Limit       int    `json:"limit,omitempty"`
}
