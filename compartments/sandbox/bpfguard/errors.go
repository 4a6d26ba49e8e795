package bpfguard

import "errors"

var (
	// ErrUnavailable reports that cgroup BPF programs cannot be loaded or
	// attached on this host.
	ErrUnavailable = errors.New("bpfguard: cgroup BPF unavailable")
	// ErrLSMUnavailable reports that the kernel refuses BPF LSM programs.
	ErrLSMUnavailable = errors.New("bpfguard: BPF LSM unavailable")
	// ErrNoCgroup2 reports that no cgroup v2 hierarchy is mounted.
	ErrNoCgroup2 = errors.New("bpfguard: no cgroup v2 mount")
	// ErrInvalid reports a Policy that cannot be enforced as given.
	ErrInvalid = errors.New("bpfguard: invalid policy")
)
