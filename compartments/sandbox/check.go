package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
)

// Layer names, as Check reports them.
const (
	LayerNamespaces = "namespaces"
	LayerUserns     = "userns"
	LayerRunc       = "runc"
	LayerSeccomp    = "seccomp"
	LayerLandlock   = "landlock"
	LayerCgroups    = "cgroups"
	LayerNftables   = "nftables"
	LayerCgroupBPF  = "cgroup-bpf"
)

// LayerStatus is the outcome of checking one confinement layer.
type LayerStatus struct {
	Layer  string
	Detail string // what was found, e.g. "abi=7"
	Err    error  // nil, or wraps ErrLayerMissing naming what is missing
}

// Report is Check's answer, one entry per required layer.
type Report []LayerStatus

// Err joins the errors of the missing layers; nil when all are there.
func (r Report) Err() error {
	var errs []error
	for _, l := range r {
		if l.Err != nil {
			errs = append(errs, l.Err)
		}
	}
	return errors.Join(errs...)
}

// Check probes each layer the runc runtime requires, for real where that is
// cheap (creating the namespaces, loading a cgroup BPF program, asking
// nf_tables for its generation in a throwaway network namespace), and
// reports what is missing. The supervisor calls it at start and refuses to
// run when Err() is not nil, unless its config lowers the requirement.
// The runc it checks is the one beside the running program.
func Check() Report { return (&Runc{}).Check() }

// Check is the package Check for this runtime's runc binary.
func (r *Runc) Check() Report {
	return Report{
		check(LayerNamespaces, checkNamespaces),
		check(LayerUserns, checkUserns),
		check(LayerRunc, func() (string, error) {
			bin, err := r.runc()
			if err != nil {
				return "", err
			}
			return checkRunc(bin)
		}),
		check(LayerSeccomp, checkSeccomp),
		check(LayerLandlock, checkLandlock),
		check(LayerCgroups, checkCgroups),
		check(LayerNftables, checkNftables),
		check(LayerCgroupBPF, checkCgroupBPF),
	}
}

func check(layer string, f func() (string, error)) LayerStatus {
	detail, err := f()
	if err != nil {
		err = fmt.Errorf("%w: %s: %w", ErrLayerMissing, layer, err)
	}
	return LayerStatus{Layer: layer, Detail: detail, Err: err}
}

var allNamespaces = []string{"user", "pid", "mnt", "ipc", "uts", "net", "cgroup"}

func checkNamespaces() (string, error) {
	var missing []string
	for _, ns := range allNamespaces {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			missing = append(missing, ns)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("kernel lacks %s namespaces", strings.Join(missing, ", "))
	}
	return strings.Join(allNamespaces, ","), nil
}

// checkUserns creates every namespace a compartment gets, with the same kind
// of id mapping, around a trivial program.
func checkUserns() (string, error) {
	bin, err := exec.LookPath("true")
	if err != nil {
		return "", fmt.Errorf("no program to test with: %w", err)
	}
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET | unix.CLONE_NEWCGROUP,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: DefaultRootHostID, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: DefaultRootHostID, Size: 1}},
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cannot create user+pid+mnt+ipc+uts+net+cgroup namespaces: %w %s", err, bytes.TrimSpace(out))
	}
	return "mapped root to " + strconv.Itoa(DefaultRootHostID), nil
}

// RuncVersion is the runc release go.mod pins with its tool directive
// (TestRuncVersionIsPinned keeps the two equal); `make build` builds it
// into bin/runc. Check refuses any other runc.
const RuncVersion = "1.5.3"

var runcVersionRE = regexp.MustCompile(`runc version (\S+)`)

// runcVersion asks bin for its version ("1.5.3", "1.1.5+ds1").
func runcVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s --version: %w", ErrNoRunc, bin, err)
	}
	m := runcVersionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%w: %s: unknown version output %q", ErrNoRunc, bin, out)
	}
	return string(m[1]), nil
}

// checkRunc: bin is there and is the pinned release.
func checkRunc(bin string) (string, error) {
	v, err := runcVersion(bin)
	if err != nil {
		return "", err
	}
	if v != RuncVersion {
		return "", fmt.Errorf("%w: %s is runc %s, want the pinned %s", ErrNoRunc, bin, v, RuncVersion)
	}
	return v, nil
}

// PinnedRunc returns the runc in dir (a bin/ that `make build` filled) if
// it is the pinned release, or an error wrapping ErrNoRunc. Tests that
// start real sandboxes use it to find the runc the appliance runs.
func PinnedRunc(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoRunc, err)
	}
	bin, err := (&Runc{Binary: filepath.Join(dir, "runc")}).runc()
	if err != nil {
		return "", err
	}
	if _, err := checkRunc(bin); err != nil {
		return "", err
	}
	return bin, nil
}

// Version is the version the runtime's runc reports ("" if it cannot be
// run); the supervisor puts it in status.json.
func (r *Runc) Version() string {
	bin, err := r.runc()
	if err != nil {
		return ""
	}
	v, _ := runcVersion(bin)
	return v
}

func checkSeccomp() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	if err != nil {
		return "", fmt.Errorf("no seccomp filter support: %w", err)
	}
	acts := strings.Fields(string(b))
	for _, want := range []string{"errno", "allow"} {
		if !slices.Contains(acts, want) {
			return "", fmt.Errorf("seccomp lacks action %s", want)
		}
	}
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return "", fmt.Errorf("prctl(PR_GET_SECCOMP): %w", err)
	}
	return "actions " + strings.Join(acts, ","), nil
}

func checkLandlock() (string, error) {
	abi := landlock.ABI()
	if abi < landlock.MinABI {
		return "", fmt.Errorf("Landlock ABI %d, need >= %d (CONFIG_SECURITY_LANDLOCK and lsm=landlock)", abi, landlock.MinABI)
	}
	d := "abi=" + strconv.Itoa(abi)
	if abi < 4 {
		d += " (no TCP port rules below ABI 4)"
	}
	return d, nil
}

// checkCgroups: memory, pids and cpu controllers where runc will use
// them (the v2 hierarchy on a unified host, v1 hierarchies on a hybrid one)
// and a cgroup2 hierarchy for the BPF hooks.
func checkCgroups() (string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	unified := false
	for _, m := range mounts {
		if m.V2 && m.Dir == "/sys/fs/cgroup" {
			unified = true
		}
	}
	var have []string
	hasV2 := false
	for _, m := range mounts {
		if m.V2 {
			hasV2 = true
		}
		if unified == m.V2 {
			have = append(have, m.Controllers...)
		}
	}
	var missing []string
	for _, c := range []string{"memory", "pids", "cpu"} {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	mode := "hybrid (limits in v1, BPF in cgroup2)"
	if unified {
		mode = "unified (cgroup2)"
	}
	if len(missing) > 0 {
		return mode, fmt.Errorf("%s: no %s controller", mode, strings.Join(missing, ", "))
	}
	if !hasV2 {
		return mode, errors.New("no cgroup2 hierarchy to attach the BPF hooks to")
	}
	return mode, nil
}

// checkNftables asks nf_tables for its ruleset generation over netlink, in
// a throwaway network namespace: it reads nothing of and changes nothing in
// the host's firewall.
func checkNftables() (string, error) {
	if err := inNewNetns(nftGetGen); err != nil {
		return "", err
	}
	return "nf_tables answers", nil
}

func nftGetGen() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netfilter netlink socket: %w", err)
	}
	defer unix.Close(fd)
	const nfnlSubsysNftables, nftMsgGetGen, nftMsgNewGen = 10, 16, 15
	msg := make([]byte, unix.SizeofNlMsghdr+4)
	binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:], nfnlSubsysNftables<<8|nftMsgGetGen)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:], 1) // seq
	// nfgenmsg: family AF_UNSPEC, version 0, res_id 0.
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("nf_tables request: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("nf_tables reply: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil || len(msgs) == 0 {
		return fmt.Errorf("nf_tables reply: %v", err)
	}
	m := msgs[0]
	if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
		if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
			return fmt.Errorf("nf_tables not available: %w", syscall.Errno(errno))
		}
	}
	if m.Header.Type != nfnlSubsysNftables<<8|nftMsgNewGen {
		return fmt.Errorf("nf_tables: unexpected reply type %#x", m.Header.Type)
	}
	return nil
}

// checkCgroupBPF loads (and drops) a trivial cgroup/connect4 program, the
// kind compartments/sandbox/bpfguard attaches.
func checkCgroupBPF() (string, error) {
	insns := []uint64{
		0x00000001000000b7, // r0 = 1 (allow)
		0x0000000000000095, // exit
	}
	license := []byte("GPL\x00")
	var attr [128]byte
	binary.NativeEndian.PutUint32(attr[0:], unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR)
	binary.NativeEndian.PutUint32(attr[4:], uint32(len(insns)))
	binary.NativeEndian.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	binary.NativeEndian.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	binary.NativeEndian.PutUint32(attr[68:], unix.BPF_CGROUP_INET4_CONNECT)
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if errno != 0 {
		return "", fmt.Errorf("load cgroup/connect4 program: %w", errno)
	}
	unix.Close(int(fd))
	return "cgroup/connect4 loads", nil
}
