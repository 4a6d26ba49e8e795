package lifecycle

import "errors"

var (
	// ErrRefused: a candidate policy set does not compile, lint, pass its
	// tests or diff against the set in force; nothing changes.
	ErrRefused = errors.New("policy set refused")
	// ErrNoEarlier: a rollback has no earlier set to return to.
	ErrNoEarlier = errors.New("no earlier policy set to roll back to")
	// ErrNoShadow: no shadow evaluation is running.
	ErrNoShadow = errors.New("no shadow policy")
	// ErrUsersWithheld: the shadow decided with the recorded users, so its
	// report is only for those who may read the audit trail.
	ErrUsersWithheld = errors.New(`this shadow decides with the recorded users (a holder of "audit.read" started it); its report needs authorization "audit.read"`)
	// ErrNoFiles: a request carried no policy files.
	ErrNoFiles = errors.New("no policy files")
	// ErrFileName: a policy file is not a top-level .rego or .yaml file.
	ErrFileName = errors.New("only top-level .rego and .yaml files")
)
