package sandbox

import (
	"cmp"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
	"github.com/e2sgate/e2sgate/images"
)

// Defaults for zero Limits: "zero means the runtime's default, never
// unlimited".
const (
	DefaultMemoryBytes = 256 << 20
	DefaultPids        = 128
	DefaultCPUPercent  = 100
)

// DefaultRootHostID is the host uid/gid that uid/gid 0 of a compartment's
// user namespace maps to: the overflow id "nobody", which owns no file and
// runs no process on the host. Only runc's own init runs as it, briefly,
// before it drops to Spec.UID.
const DefaultRootHostID = 65534

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// ociOptions is what the runtime adds to a Spec to make an OCI spec.
type ociOptions struct {
	Rootfs      string // absolute host path of the image
	NetnsPath   string // the prepared network namespace; "" creates one
	CgroupsPath string // e.g. /e2sgate/purchasing
	RootHostID  uint32
	// NoSwapLimit: the host's v1 memory controller has no swap accounting
	// (no memory.memsw.*), where runc would fail to set memory+swap.
	NoSwapLimit bool
	// SeccompListener is the supervisor's seccomp agent socket; "" leaves
	// every denial to the kernel's silent EPERM.
	SeccompListener string
}

// validate checks what every runtime that confines needs from a Spec.
func (s Spec) validate(rootHostID uint32) error {
	switch {
	case !nameRE.MatchString(s.Name):
		return fmt.Errorf("%w: name %q", ErrInvalidSpec, s.Name)
	case s.UID == 0 || s.GID == 0:
		return fmt.Errorf("%w: %s: uid/gid 0 is not unprivileged", ErrInvalidSpec, s.Name)
	case s.UID == rootHostID || s.GID == rootHostID:
		return fmt.Errorf("%w: %s: uid/gid %d is reserved for the user namespace's root", ErrInvalidSpec, s.Name, rootHostID)
	case s.Limits.MemoryBytes < 0 || s.Limits.Pids < 0 || s.Limits.CPUPercent < 0:
		return fmt.Errorf("%w: %s: negative limit", ErrInvalidSpec, s.Name)
	}
	if err := s.validatePeers(rootHostID); err != nil {
		return err
	}
	switch s.Network.Mode {
	case NetNone, NetLoopback, NetVeth:
	default:
		return fmt.Errorf("%w: %s: network mode %q", ErrInvalidSpec, s.Name, s.Network.Mode)
	}
	for _, m := range s.Mounts {
		t := cmp.Or(m.Target, m.Source)
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(t) || filepath.Clean(t) != t {
			return fmt.Errorf("%w: %s: mount %q -> %q", ErrInvalidSpec, s.Name, m.Source, m.Target)
		}
		switch t {
		case "/", "/proc", "/dev", "/tmp", "/etc", "/bin":
			return fmt.Errorf("%w: %s: mount over %s", ErrInvalidSpec, s.Name, t)
		}
	}
	return nil
}

// validatePeers checks the ids mapped besides the program's own: none
// privileged, reserved or mapped twice, and every supplementary group
// mapped.
func (s Spec) validatePeers(rootHostID uint32) error {
	for _, ids := range [][]uint32{append([]uint32{s.UID}, s.PeerUIDs...), append([]uint32{s.GID}, s.PeerGIDs...)} {
		seen := map[uint32]bool{}
		for _, id := range ids {
			if id == 0 || id == rootHostID || seen[id] {
				return fmt.Errorf("%w: %s: peer id %d is privileged, reserved or mapped twice", ErrInvalidSpec, s.Name, id)
			}
			seen[id] = true
		}
	}
	for _, g := range s.Groups {
		if g != s.GID && !slices.Contains(s.PeerGIDs, g) {
			return fmt.Errorf("%w: %s: group %d is not mapped (add it to PeerGIDs)", ErrInvalidSpec, s.Name, g)
		}
	}
	return nil
}

// idMappings maps uid/gid 0 to the overflow id and the program's own and
// its peers' ids to themselves.
func idMappings(rootHostID, own uint32, peers []uint32) []specs.LinuxIDMapping {
	m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: rootHostID, Size: 1}, {ContainerID: own, HostID: own, Size: 1}}
	for _, id := range peers {
		m = append(m, specs.LinuxIDMapping{ContainerID: id, HostID: id, Size: 1})
	}
	return m
}

// ociSpec turns a compartment Spec into the OCI runtime spec runc runs. It
// is a pure conversion (golden-tested).
func ociSpec(s Spec, o ociOptions) (*specs.Spec, error) {
	if err := s.validate(o.RootHostID); err != nil {
		return nil, err
	}
	env := append([]string(nil), s.Env...)
	if !hasEnv(env, landlock.EnvName) {
		e, err := s.LandlockEnv()
		if err != nil {
			return nil, err
		}
		env = append(env, e)
	}
	mem := cmp.Or(s.Limits.MemoryBytes, DefaultMemoryBytes)
	if !hasEnv(env, "GOMEMLIMIT") {
		// Let the Go GC work hard before the kernel's OOM killer has to.
		env = append(env, "GOMEMLIMIT="+strconv.FormatInt(mem/10*9, 10))
	}
	cpuPct := cmp.Or(s.Limits.CPUPercent, DefaultCPUPercent)
	if !hasEnv(env, "GOMAXPROCS") {
		// The program cannot see its cgroup (no /sys), so tell the Go
		// scheduler how many cores the cpu limit gives it.
		env = append(env, "GOMAXPROCS="+strconv.Itoa(max(1, (cpuPct+99)/100)))
	}
	pids := cmp.Or(s.Limits.Pids, DefaultPids)
	period := uint64(100000)
	quota := int64(cpuPct) * int64(period) / 100
	oomAdj := 500 // compartments die before the supervisor
	denyAll := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}

	mounts := []specs.Mount{
		// Only this compartment's processes (own pid namespace), and only
		// the per-process part of /proc (subset=pid): no /proc/sys,
		// /proc/kcore, /proc/keys, ... at all.
		{Destination: "/proc", Type: "proc", Source: "proc",
			Options: []string{"nosuid", "noexec", "nodev", "subset=pid", "hidepid=invisible"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "noexec", "strictatime", "mode=755", "size=64k"}},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "noexec", "mode=700", "size=64m",
				"uid=" + strconv.Itoa(int(s.UID)), "gid=" + strconv.Itoa(int(s.GID))}},
	}
	for _, m := range s.Mounts {
		opts := []string{"rbind", "nosuid", "nodev", "noexec"}
		if m.Writable {
			opts = append(opts, "rw")
		} else {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, specs.Mount{Destination: cmp.Or(m.Target, m.Source), Type: "bind", Source: m.Source, Options: opts})
	}

	sp := &specs.Spec{
		// Nothing below is newer than runtime-spec 1.0.2 (runc 1.5
		// speaks 1.3.0, which accepts it).
		Version:  "1.0.2",
		Hostname: s.Name,
		Root:     &specs.Root{Path: o.Rootfs, Readonly: true},
		Process: &specs.Process{
			User: specs.User{UID: s.UID, GID: s.GID, AdditionalGids: s.Groups, Umask: ptr(uint32(0o077))},
			Args: append([]string{images.BinaryPath(s.Name)}, s.Args...),
			Env:  env,
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: []string{}, Effective: []string{}, Inheritable: []string{},
				Permitted: []string{}, Ambient: []string{},
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 4096},
				{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
			},
			NoNewPrivileges: true,
			OOMScoreAdj:     &oomAdj,
		},
		Mounts:      mounts,
		Annotations: map[string]string{"org.e2sgate.compartment": s.Name, "org.e2sgate.label": s.Label},
		Linux: &specs.Linux{
			// uid/gid 0 inside → the host's overflow id; Spec.UID/GID inside
			// → the same ids on the host, so files the supervisor chowns
			// to Spec.UID are the compartment's own, inside and out. Every
			// other host id shows up as the overflow id and is "other",
			// but for the peers the spec names.
			UIDMappings: idMappings(o.RootHostID, s.UID, s.PeerUIDs),
			GIDMappings: idMappings(o.RootHostID, s.GID, s.PeerGIDs),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.UserNamespace},
				{Type: specs.PIDNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.NetworkNamespace, Path: o.NetnsPath},
				{Type: specs.CgroupNamespace},
			},
			CgroupsPath: o.CgroupsPath,
			Resources: &specs.LinuxResources{
				Devices: denyAll,
				Memory:  memoryLimits(mem, o.NoSwapLimit),
				Pids:    &specs.LinuxPids{Limit: &pids},
				CPU:     &specs.LinuxCPU{Quota: &quota, Period: &period},
			},
			Seccomp:           seccompProfile(o.SeccompListener, s.Name),
			RootfsPropagation: "rprivate",
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
				"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
				"/proc/sched_debug", "/proc/scsi", "/proc/interrupts",
				"/sys/firmware", "/sys/devices/virtual/powercap",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}
	return sp, nil
}

func memoryLimits(mem int64, noSwap bool) *specs.LinuxMemory {
	m := &specs.LinuxMemory{Limit: &mem}
	if !noSwap {
		// memory+swap = memory: no swapping around the limit.
		m.Swap = &mem
	}
	return m
}

func ptr[T any](v T) *T { return &v }
