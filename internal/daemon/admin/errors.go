package admin

import "errors"

var (
	// ErrDenied: the caller lacks the command's authorization.
	ErrDenied = errors.New("denied")
	// ErrSamePerson: the proposer tried to approve their own proposal.
	ErrSamePerson = errors.New("the proposer cannot approve their own proposal; a second person must")
	// ErrExpired: the proposal expired before approval.
	ErrExpired = errors.New("proposal expired")
	// ErrNoProposal: no pending proposal has that id.
	ErrNoProposal = errors.New("no such pending proposal")
	// ErrBadRequest: the request or its arguments are malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrNotWired: the command is authorised but the service that carries it
	// out is not part of this build.
	ErrNotWired = errors.New("not available in this build")
	// ErrBadRoles: the role file is malformed.
	ErrBadRoles = errors.New("bad role data")
)
