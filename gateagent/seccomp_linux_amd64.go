//go:build linux && amd64

package gateagent

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gateSyscalls is the gate agent's allowlist once it is set up: the
// compartments' allowlist (compartments/sandbox/seccomp.go), which the gate
// agent already runs under in a runc sandbox, without what only setup
// needs — execve (it never starts a program), the Landlock calls (it has
// restricted itself) — and with socket, clone, clone3, ioctl and prctl
// narrowed below.
var gateSyscalls = []uintptr{
	unix.SYS_ARCH_PRCTL, unix.SYS_BRK, unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MADVISE, unix.SYS_MINCORE,
	unix.SYS_MREMAP, unix.SYS_FUTEX, unix.SYS_SET_ROBUST_LIST, unix.SYS_GET_ROBUST_LIST, unix.SYS_RSEQ, unix.SYS_GETTID,
	unix.SYS_GETPID, unix.SYS_GETPPID, unix.SYS_TGKILL, unix.SYS_TKILL, unix.SYS_KILL, unix.SYS_RT_SIGACTION,
	unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_RT_SIGPENDING, unix.SYS_RT_SIGSUSPEND, unix.SYS_RT_SIGTIMEDWAIT, unix.SYS_SIGALTSTACK,
	unix.SYS_RESTART_SYSCALL, unix.SYS_SCHED_GETAFFINITY, unix.SYS_SCHED_YIELD, unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_CLOCK_GETTIME,
	unix.SYS_CLOCK_GETRES, unix.SYS_GETTIMEOFDAY, unix.SYS_TIME, unix.SYS_SETITIMER, unix.SYS_GETITIMER, unix.SYS_TIMER_CREATE,
	unix.SYS_TIMER_SETTIME, unix.SYS_TIMER_GETTIME, unix.SYS_TIMER_GETOVERRUN, unix.SYS_TIMER_DELETE, unix.SYS_EXIT, unix.SYS_EXIT_GROUP,
	unix.SYS_GETRANDOM, unix.SYS_UNAME, unix.SYS_PRLIMIT64, unix.SYS_GETRLIMIT, unix.SYS_GETRUSAGE, unix.SYS_SYSINFO,
	unix.SYS_TIMES, unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID, unix.SYS_GETGROUPS,
	unix.SYS_GETRESUID, unix.SYS_GETRESGID, unix.SYS_GETPGRP, unix.SYS_GETPGID, unix.SYS_GETSID, unix.SYS_EPOLL_CREATE1,
	unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_PWAIT, unix.SYS_EPOLL_PWAIT2, unix.SYS_EPOLL_WAIT, unix.SYS_EVENTFD2, unix.SYS_PIPE2,
	unix.SYS_POLL, unix.SYS_PPOLL, unix.SYS_PSELECT6, unix.SYS_READ, unix.SYS_WRITE, unix.SYS_READV,
	unix.SYS_WRITEV, unix.SYS_PREAD64, unix.SYS_PWRITE64, unix.SYS_PREADV, unix.SYS_PWRITEV, unix.SYS_CLOSE,
	unix.SYS_CLOSE_RANGE, unix.SYS_DUP, unix.SYS_DUP3, unix.SYS_FCNTL, unix.SYS_LSEEK, unix.SYS_SENDFILE,
	unix.SYS_SPLICE, unix.SYS_COPY_FILE_RANGE, unix.SYS_OPENAT, unix.SYS_OPENAT2, unix.SYS_NEWFSTATAT, unix.SYS_FSTAT,
	unix.SYS_STATX, unix.SYS_STATFS, unix.SYS_FSTATFS, unix.SYS_GETDENTS64, unix.SYS_READLINKAT, unix.SYS_FACCESSAT,
	unix.SYS_FACCESSAT2, unix.SYS_GETCWD, unix.SYS_CHDIR, unix.SYS_FCHDIR, unix.SYS_MKDIRAT, unix.SYS_UNLINKAT,
	unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2, unix.SYS_LINKAT, unix.SYS_SYMLINKAT, unix.SYS_FCHMOD, unix.SYS_FCHMODAT,
	unix.SYS_FCHOWN, unix.SYS_FCHOWNAT, unix.SYS_UTIMENSAT, unix.SYS_FTRUNCATE, unix.SYS_FALLOCATE, unix.SYS_FSYNC,
	unix.SYS_FDATASYNC, unix.SYS_FLOCK, unix.SYS_UMASK, unix.SYS_SOCKETPAIR, unix.SYS_BIND, unix.SYS_LISTEN,
	unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_CONNECT, unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME, unix.SYS_SETSOCKOPT,
	unix.SYS_GETSOCKOPT, unix.SYS_SENDTO, unix.SYS_RECVFROM, unix.SYS_SENDMSG, unix.SYS_RECVMSG, unix.SYS_SENDMMSG,
	unix.SYS_RECVMMSG, unix.SYS_SHUTDOWN, unix.SYS_WAIT4, unix.SYS_WAITID, unix.SYS_PIDFD_OPEN, unix.SYS_PIDFD_SEND_SIGNAL,
}

// Classic BPF over struct seccomp_data: nr at 0, arch at 4, args at 16 + 8i
// (the low 32 bits first on little-endian).
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16
	offArg1 = 24

	retAllow = unix.SECCOMP_RET_ALLOW
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retNoSys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)

	namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
		unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP | unix.CLONE_NEWTIME
)

func ld(off uint32) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
}
func ret(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
func jeq(k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jt: jt, Jf: jf}
}

// gateFilter is the program: wrong arch killed; each allowed call
// allowed; socket only AF_UNIX (no TCP, UDP, raw, netlink ...); clone
// without namespace flags; clone3 ENOSYS (Go falls back to clone); ioctl
// and prctl only the requests the Go runtime and its libraries make;
// everything else EPERM.
func gateFilter() []unix.SockFilter {
	p := []unix.SockFilter{ld(offArch), jeq(unix.AUDIT_ARCH_X86_64, 1, 0), ret(retKill), ld(offNr)}
	for _, nr := range gateSyscalls {
		p = append(p, jeq(uint32(nr), 0, 1), ret(retAllow))
	}
	// One argument against a set of values: allowed if it is one of them.
	oneOf := func(nr uintptr, off uint32, vals ...uint32) {
		p = append(p, jeq(uint32(nr), 0, uint8(2*len(vals)+2)), ld(off))
		for _, v := range vals {
			p = append(p, jeq(v, 0, 1), ret(retAllow))
		}
		p = append(p, ret(retEPERM))
	}
	oneOf(unix.SYS_SOCKET, offArg0, unix.AF_UNIX)
	oneOf(unix.SYS_IOCTL, offArg1, unix.TCGETS, unix.TIOCGWINSZ, unix.TIOCGPGRP, 0x541b, 0x5421, 0x5451, 0x5450) // FIONREAD, FIONBIO, FIOCLEX, FIONCLEX
	oneOf(unix.SYS_PRCTL, offArg0, unix.PR_SET_NO_NEW_PRIVS, unix.PR_GET_NO_NEW_PRIVS, unix.PR_SET_PDEATHSIG,
		unix.PR_GET_PDEATHSIG, unix.PR_SET_NAME, unix.PR_GET_NAME, unix.PR_GET_DUMPABLE, unix.PR_GET_SECCOMP, unix.PR_SET_VMA)
	p = append(p,
		jeq(unix.SYS_CLONE, 0, 4), ld(offArg0),
		unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: namespaceFlags, Jt: 1},
		ret(retAllow), ret(retEPERM),
		jeq(unix.SYS_CLONE3, 0, 1), ret(retNoSys),
		ret(retEPERM))
	return p
}

// filterSelf installs gateFilter on every thread of the process (TSYNC).
// no_new_privs first, which the kernel requires of an unprivileged caller.
func filterSelf() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("%w: no_new_privs: %w", ErrSeccomp, err)
	}
	f := gateFilter()
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("%w: %w", ErrSeccomp, errno)
	}
	return nil
}

// seccompActive reports whether a seccomp filter already confines the
// process (prctl PR_GET_SECCOMP, which the sandbox's filter allows).
func seccompActive() bool {
	mode, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	return err == nil && mode == unix.SECCOMP_MODE_FILTER
}
