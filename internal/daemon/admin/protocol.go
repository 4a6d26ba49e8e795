// Package admin is the supervisor's admin socket: operators' commands
// (e2sctl), the caller identified by SO_PEERCRED, each command authorised
// through OPA (policies/admin.rego, "command authorizations") from the
// roles in policy data, every command audited, and the two-person rule for
// sensitive acts (a proposal by one person, approval by a different one,
// before it expires).
//
//	e2sctl                       admin socket (supervisor, root)
//	  | connect ------------------>| SO_PEERCRED → uid; no role: refused
//	  |                            |   unread (one audit record per uid)
//	  | {"command","args"} ------->| ≤ 1 MiB, 10 s; ≤ 4 connections per uid
//	  |                            | uid's name = account database's?
//	  |                            | admin.rego: authorization held?
//	  |                            | audit record (admin.log), fail closed
//	  |                            | two-person? → proposal (with the
//	  |                            |   state it is computed against), else run
//	  |<------- {"ok","result"} ---|
package admin

import "github.com/e2sgate/e2sgate/internal/daemon/admin/api"

// The wire types live in package api, which e2sctl links without the server.
type (
	Request   = api.Request
	Response  = api.Response
	Proposal  = api.Proposal
	RoleArgs  = api.RoleArgs
	AuditArgs = api.AuditArgs
)

const maxRequest = api.MaxRequest

// Call sends one request to the admin socket at path (see api.Call).
func Call(path, command string, args any) (*Response, error) { return api.Call(path, command, args) }
