package sandbox

import (
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/e2sgate/e2sgate/compartments/sandbox/seccompnotify"
)

// The seccomp allowlist every compartment runs under. Default action: fail
// with EPERM. It was derived, not copied: from the syscalls the Go runtime
// issues (runtime/sys_linux_amd64.s), `strace -f -c` of the probe's "legit"
// mode (files, CA roots, net/http on loopback, gRPC on a unix socket, os/exec
// of itself), what go-landlock needs, and what runc's init still does
// between installing the filter and execve (write, close, openat, getppid,
// execve, futex). Anything else — mount, unshare/setns, ptrace, bpf,
// perf_event_open, keyctl, io_uring, userfaultfd, process_vm_*, kexec,
// modules, setuid family, capset, personality, chroot/pivot_root, name/open
// handles, new mount API — is denied.
//
// Argument filters close what a plain name list cannot:
//   - socket: only AF_UNIX, and AF_INET/AF_INET6 stream or datagram with
//     protocol 0/TCP/UDP. So no raw, packet, netlink, vsock, ... sockets,
//     and no IPPROTO_MPTCP: Landlock's TCP rules do not cover MPTCP, Go's
//     listeners try MPTCP first and fall back to TCP when it is refused.
//   - clone: no namespace flags (a nested user namespace would hand back
//     capabilities inside it); clone3 gets ENOSYS (its flags live in memory
//     seccomp cannot read), so libc and Go fall back to clone.
//   - ioctl: only terminal queries and FIONREAD/FIONBIO/FIOCLEX: no TIOCSTI.
//   - prctl: only no_new_privs, pdeathsig, name, dumpable and seccomp
//     queries, and naming anonymous mappings.
var allowedSyscalls = []string{
	// Go runtime: memory, threads, signals, time, scheduling.
	"arch_prctl", "brk", "mmap", "munmap", "madvise", "mincore", "mremap",
	"futex", "set_robust_list", "get_robust_list", "rseq", "gettid",
	"getpid", "getppid", "tgkill", "tkill", "kill",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending",
	"rt_sigsuspend", "rt_sigtimedwait", "sigaltstack", "restart_syscall",
	"sched_getaffinity", "sched_yield", "nanosleep", "clock_nanosleep",
	"clock_gettime", "clock_getres", "gettimeofday", "time",
	"setitimer", "getitimer", "timer_create", "timer_settime",
	"timer_gettime", "timer_getoverrun", "timer_delete",
	"exit", "exit_group", "getrandom", "uname", "prlimit64", "getrlimit",
	"getrusage", "sysinfo", "times",
	"getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid",
	"getresgid", "getpgrp", "getpgid", "getsid",
	// Polling and descriptors.
	"epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait",
	"eventfd2", "pipe2", "poll", "ppoll", "pselect6",
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv",
	"pwritev", "close", "close_range", "dup", "dup3", "fcntl", "lseek",
	"sendfile", "splice", "copy_file_range",
	// Files (the mounts and Landlock decide which ones).
	"openat", "openat2", "newfstatat", "fstat", "statx", "statfs", "fstatfs",
	"getdents64", "readlinkat", "faccessat", "faccessat2", "getcwd", "chdir",
	"fchdir", "mkdirat", "unlinkat", "renameat", "renameat2", "linkat",
	"symlinkat", "fchmod", "fchmodat", "fchown", "fchownat", "utimensat",
	"ftruncate", "fallocate", "fsync", "fdatasync", "flock", "umask",
	// Not memfd_create: exec of /proc/self/fd/N of a memfd would bypass
	// the noexec mounts.
	// Sockets (socket itself is filtered below).
	"socketpair", "bind", "listen", "accept", "accept4", "connect",
	"getsockname", "getpeername", "setsockopt", "getsockopt", "sendto",
	"recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "shutdown",
	// Processes: runc's final execve, and os/exec of the program's own
	// image (the root is read-only and every other mount is noexec).
	"execve", "wait4", "waitid", "pidfd_open", "pidfd_send_signal",
	// Landlock: the program restricts itself at start.
	"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
}

// Generic ioctl numbers (asm-generic/ioctls.h) that x/sys/unix does not
// name on every arch.
const (
	fionread = 0x541b
	fionbio  = 0x5421
	fionclex = 0x5450
	fioclex  = 0x5451
)

// namespaceFlags are the clone flags that create namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
	unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME

// seccompProfile is the allowlist above. With a listener (the supervisor's
// seccompnotify.Agent), what it denies by name, the socket families and
// types it refuses and clone with namespace flags go to the listener,
// which fails them with the same EPERM and audits them (runc cannot make
// the default action a notification). Left to the kernel's silent EPERM or
// ENOSYS, each by a documented rule (docs/ARCHITECTURE.md, "Kernel-layer
// denials"): clone3 (ENOSYS: the Go runtime and libc probe it at every
// thread start), socket with a protocol other than 0/TCP/UDP (Go's
// listeners probe MPTCP first), and ioctl and prctl requests outside the
// lists below.
func seccompProfile(listener, compartment string) *specs.LinuxSeccomp {
	eperm := uint(unix.EPERM)
	enosys := uint(unix.ENOSYS)
	sc := []specs.LinuxSyscall{{Names: allowedSyscalls, Action: specs.ActAllow}}
	// socket(domain, type, protocol).
	sc = append(sc, specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow,
		Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_UNIX, Op: specs.OpEqualTo}}})
	for _, domain := range []uint64{unix.AF_INET, unix.AF_INET6} {
		for _, t := range []struct{ typ, proto uint64 }{
			{unix.SOCK_STREAM, 0}, {unix.SOCK_STREAM, unix.IPPROTO_TCP},
			{unix.SOCK_DGRAM, 0}, {unix.SOCK_DGRAM, unix.IPPROTO_UDP},
		} {
			sc = append(sc, specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{
					{Index: 0, Value: domain, Op: specs.OpEqualTo},
					// type carries SOCK_NONBLOCK|SOCK_CLOEXEC above the low bits.
					{Index: 1, Value: 0xf, ValueTwo: t.typ, Op: specs.OpMaskedEqual},
					{Index: 2, Value: t.proto, Op: specs.OpEqualTo},
				}})
		}
	}
	// clone(flags, ...) on x86-64 and arm64 has flags in the first argument.
	sc = append(sc, specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActAllow,
		Args: []specs.LinuxSeccompArg{{Index: 0, Value: namespaceFlags, ValueTwo: 0, Op: specs.OpMaskedEqual}}})
	sc = append(sc, specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &enosys})
	for _, req := range []uint64{unix.TCGETS, unix.TIOCGWINSZ, unix.TIOCGPGRP, fionread, fionbio, fioclex, fionclex} {
		sc = append(sc, specs.LinuxSyscall{Names: []string{"ioctl"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: req, Op: specs.OpEqualTo}}})
	}
	for _, opt := range []uint64{unix.PR_SET_NO_NEW_PRIVS, unix.PR_GET_NO_NEW_PRIVS, unix.PR_SET_PDEATHSIG,
		unix.PR_GET_PDEATHSIG, unix.PR_SET_NAME, unix.PR_GET_NAME, unix.PR_GET_DUMPABLE, unix.PR_GET_SECCOMP,
		unix.PR_SET_VMA /* Go names its anonymous mappings */} {
		sc = append(sc, specs.LinuxSyscall{Names: []string{"prctl"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: opt, Op: specs.OpEqualTo}}})
	}
	p := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   seccompArches(),
		Syscalls:        sc,
	}
	if listener != "" {
		p.ListenerPath, p.ListenerMetadata = listener, compartment
		p.Syscalls = append(p.Syscalls, notifyRules()...)
	}
	return p
}

// notifyRules send the profile's denials to the listener: every syscall
// name of the arch that no rule above names, the socket families and the
// AF_INET/AF_INET6 socket types the allow rules leave out, and clone with
// a namespace flag.
func notifyRules() []specs.LinuxSyscall {
	named := map[string]bool{"socket": true, "clone": true, "clone3": true, "ioctl": true, "prctl": true}
	for _, n := range allowedSyscalls {
		named[n] = true
	}
	var denied []string
	for _, n := range seccompnotify.Names() {
		if !named[n] {
			denied = append(denied, n)
		}
	}
	rules := []specs.LinuxSyscall{{Names: denied, Action: specs.ActNotify}}
	for family := uint64(0); family < unix.AF_MAX; family++ {
		if family != unix.AF_UNIX && family != unix.AF_INET && family != unix.AF_INET6 {
			rules = append(rules, specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActNotify,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: family, Op: specs.OpEqualTo}}})
		}
	}
	for _, family := range []uint64{unix.AF_INET, unix.AF_INET6} {
		for _, typ := range []uint64{unix.SOCK_RAW, unix.SOCK_RDM, unix.SOCK_SEQPACKET, unix.SOCK_DCCP, unix.SOCK_PACKET} {
			rules = append(rules, specs.LinuxSyscall{Names: []string{"socket"}, Action: specs.ActNotify,
				Args: []specs.LinuxSeccompArg{{Index: 0, Value: family, Op: specs.OpEqualTo},
					{Index: 1, Value: 0xf, ValueTwo: typ, Op: specs.OpMaskedEqual}}})
		}
	}
	for _, flag := range []uint64{unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER,
		unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP, unix.CLONE_NEWTIME} {
		rules = append(rules, specs.LinuxSyscall{Names: []string{"clone"}, Action: specs.ActNotify,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: flag, ValueTwo: flag, Op: specs.OpMaskedEqual}}})
	}
	return rules
}

func seccompArches() []specs.Arch {
	switch runtime.GOARCH {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64}
	case "arm64":
		return []specs.Arch{specs.ArchAARCH64}
	}
	return nil
}
