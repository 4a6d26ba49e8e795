// Package landlock applies the Landlock rules the supervisor hands a
// compartment program. A compartment's main calls RestrictSelf first thing;
// from then on the kernel denies every file access outside the listed paths
// and (Landlock ABI >= 4) every TCP connect/bind outside the listed ports,
// and (ABI >= 6) signals and abstract unix sockets leaving the compartment.
//
// Compartment programs link this package, so it must stay tiny: it must not
// import the sandbox runtimes or OCI code (deptest_test.go checks).
package landlock

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	golandlock "github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// EnvName is the environment variable through which the supervisor passes
// the JSON-encoded Rules to a compartment program.
const EnvName = "E2SGATE_LANDLOCK"

// MinABI is the lowest Landlock ABI RestrictSelf accepts: ABI 1 restricts
// file access. TCP port rules need ABI 4 and are applied only there.
const MinABI = 1

// AuditABI is the first Landlock ABI that reports denials to the kernel's
// audit subsystem (which the supervisor reads).
const AuditABI = 7

// Rules is what a compartment may touch once it called RestrictSelf.
type Rules struct {
	// ReadOnly paths (files or directory trees) may be read and, for
	// regular files, executed.
	ReadOnly []string `json:"ro,omitempty"`
	// ReadWrite paths may also be written, created in and removed from.
	ReadWrite []string `json:"rw,omitempty"`
	// ConnectTCP and BindTCP are the TCP ports the compartment may connect
	// to and bind. Empty means none (when the kernel has ABI >= 4).
	ConnectTCP []uint16 `json:"connect_tcp,omitempty"`
	BindTCP    []uint16 `json:"bind_tcp,omitempty"`
	// ConnectAnyPort leaves TCP connect to other layers (an allowlist entry
	// with "any port" cannot be said in Landlock port rules).
	ConnectAnyPort bool `json:"connect_any_port,omitempty"`
}

// Env returns "E2SGATE_LANDLOCK=<json>" for a compartment's environment.
func (r Rules) Env() (string, error) {
	if err := r.validate(); err != nil {
		return "", err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode landlock rules: %w", err)
	}
	return EnvName + "=" + string(b), nil
}

func (r Rules) validate() error {
	for _, p := range slices.Concat(r.ReadOnly, r.ReadWrite) {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("%w: path %q is not absolute and clean", ErrBadRules, p)
		}
	}
	return nil
}

// ABI returns the kernel's Landlock ABI version, 0 if it has none.
func ABI() int {
	v, err := llsys.LandlockGetABIVersion()
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// Parse decodes rules as passed in the environment variable.
func Parse(s string) (Rules, error) {
	var r Rules
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Rules{}, fmt.Errorf("%w: %w", ErrBadRules, err)
	}
	return r, r.validate()
}

// RestrictSelf applies the rules from E2SGATE_LANDLOCK to the whole calling
// process (all threads) and everything it starts later. It fails closed: no
// rules, bad rules or a kernel without Landlock are errors. Missing paths are
// skipped (a path that does not exist cannot be reached either).
func RestrictSelf() error {
	s, ok := os.LookupEnv(EnvName)
	if !ok {
		return ErrNoRules
	}
	r, err := Parse(s)
	if err != nil {
		return err
	}
	return Restrict(r)
}

// Restrict applies r to the calling process. Use RestrictSelf in programs.
func Restrict(r Rules) error {
	if err := r.validate(); err != nil {
		return err
	}
	abi := ABI()
	if abi < MinABI {
		return fmt.Errorf("%w (ABI %d, need %d)", ErrUnsupported, abi, MinABI)
	}
	// Directory rights on a non-directory are invalid, so split by kind.
	// A path that does not exist is skipped: it cannot be reached either.
	roDirs, roFiles := splitByKind(r.ReadOnly)
	rwDirs, rwFiles := splitByKind(r.ReadWrite)
	// Renaming a file from one writable directory into another (a spool's
	// confirmations/ into done/) needs the refer right (ABI >= 2); without
	// it the kernel answers EXDEV. It is granted only where the kernel has
	// it: go-landlock's best effort would otherwise drop Landlock entirely
	// on ABI 1.
	rw := golandlock.RWDirs(rwDirs...).WithResolveUnix()
	if abi >= 2 {
		rw = rw.WithRefer()
	}
	rules := []golandlock.Rule{
		// Connecting to pathname unix sockets (restricted from ABI 9 on)
		// is allowed in the compartment's own mounts, read-only ones
		// included (the gate agent's socket directory is mounted
		// read-only); a read-only mount stops creating sockets, not
		// connecting to them.
		golandlock.RODirs(roDirs...).WithResolveUnix().IgnoreIfMissing(),
		golandlock.ROFiles(roFiles...).IgnoreIfMissing(),
		rw.IgnoreIfMissing(),
		golandlock.RWFiles(rwFiles...).IgnoreIfMissing(),
	}
	for _, p := range r.ConnectTCP {
		if !r.ConnectAnyPort {
			rules = append(rules, golandlock.ConnectTCP(p))
		}
	}
	for _, p := range r.BindTCP {
		rules = append(rules, golandlock.BindTCP(p))
	}
	// The newest config go-landlock knows, downgraded to what the kernel
	// has: ABI 1 and up restrict files, 4 and up TCP, 6 and up signals and
	// abstract unix sockets. MinABI above makes "nothing at all" an error.
	// UDP (ABI 10) is left out: compartments need no UDP and nftables, the
	// cgroup hooks and seccomp already cover it.
	cfg := golandlock.V11
	cfg.HandledAccessNet &= llsys.AccessNetBindTCP | llsys.AccessNetConnectTCP
	if r.ConnectAnyPort {
		cfg.HandledAccessNet &^= llsys.AccessNetConnectTCP
	}
	// Denials are logged to the kernel's audit records (ABI >= 7; the
	// supervisor reads them) for this program and, unlike the kernel's
	// default, also for what it starts later (a compartment's re-exec of
	// its own image). Older kernels: dropped by BestEffort.
	cfg = cfg.EnableLoggingForSubprocesses()
	if err := cfg.BestEffort().Restrict(rules...); err != nil {
		return fmt.Errorf("landlock restrict (ABI %d): %w", abi, err)
	}
	return nil
}

func splitByKind(paths []string) (dirs, files []string) {
	for _, p := range paths {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			continue
		case fi.IsDir():
			dirs = append(dirs, p)
		default:
			files = append(files, p)
		}
	}
	return dirs, files
}
