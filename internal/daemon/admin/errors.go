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
	// ErrStale: the state a proposal was computed against changed before
	// its approval; it was not carried out.
	ErrStale = errors.New("the state this proposal was computed against has changed")
	// ErrPending: a proposal on the same state is already waiting.
	ErrPending = errors.New("another proposal on the same state is pending")
	// ErrProposerLost: the proposer no longer holds the authorization (or
	// the account) they proposed with.
	ErrProposerLost = errors.New("the proposer no longer holds the authorization they proposed with")
	// ErrBadRequest: the request or its arguments are malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrBadRoles: the role file is malformed.
	ErrBadRoles = errors.New("bad role data")
	// ErrSecondAccount: a person already holds roles under another uid.
	ErrSecondAccount = errors.New("one person, one account")
	// ErrAccountMismatch: the role book and the system's account database
	// disagree about a uid.
	ErrAccountMismatch = errors.New("the role book and the system account database disagree")
	// ErrNoSuchAccount: the system account database has no such name.
	ErrNoSuchAccount = errors.New("no such account")
	// ErrBookExists: the role book already names accounts (accounts init
	// without -force).
	ErrBookExists = errors.New("the role book already names accounts")
)
