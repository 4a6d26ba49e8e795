// Package admin is the supervisor's admin socket: operators' commands
// (e2sctl), the caller identified by SO_PEERCRED, each command authorised
// through OPA (policies/admin.rego, "command authorizations") from the
// roles in policy data, every command audited, and the two-person rule for
// sensitive acts (a proposal by one person, approval by a different one,
// before it expires).
//
//	e2sctl                       admin socket (supervisor, root)
//	  | {"command","args"} ------->| SO_PEERCRED → uid → roles
//	  |                            | admin.rego: authorization held?
//	  |                            | audit record (admin.log), fail closed
//	  |                            | two-person? → proposal, else run
//	  |<------- {"ok","result"} ---|
package admin

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

// Proposal is a two-person command waiting for a second person.
type Proposal struct {
	ID       string          `json:"id"`
	Command  string          `json:"command"`
	Args     json.RawMessage `json:"args,omitempty"`
	Summary  string          `json:"summary"`
	Proposer string          `json:"proposer"`
	UID      int             `json:"uid"`
	Created  time.Time       `json:"created"`
	Expires  time.Time       `json:"expires"`
	State    string          `json:"state"` // pending, approved, rejected, expired, failed
	Decider  string          `json:"decider,omitempty"`
	Result   string          `json:"result,omitempty"`
}

// maxRequest bounds a request (policy sets travel in it).
const maxRequest = 16 << 20

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
	if _, err := c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("admin socket: send: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&resp); err != nil {
		return nil, fmt.Errorf("admin socket: answer: %w", err)
	}
	return &resp, nil
}
