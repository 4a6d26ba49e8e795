package seccompnotify

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SyscallName is nr's name on this arch, or "syscall_<nr>".
func SyscallName(nr int32) string {
	if n, ok := syscallNames[nr]; ok {
		return n
	}
	return "syscall_" + strconv.Itoa(int(nr))
}

// argCount is how many arguments the summary shows; syscalls not listed
// show all six registers.
var argCount = map[string]int{
	"ptrace": 4, "mount": 5, "umount2": 2, "unshare": 1, "setns": 2, "keyctl": 5, "add_key": 5,
	"request_key": 4, "bpf": 3, "perf_event_open": 5, "io_uring_setup": 2, "userfaultfd": 1,
	"setuid": 1, "setgid": 1, "setreuid": 2, "setregid": 2, "setresuid": 3, "setresgid": 3,
	"setgroups": 2, "capset": 2, "chroot": 1, "pivot_root": 2, "personality": 1, "socket": 3,
	"clone": 5, "memfd_create": 2, "kexec_load": 4, "init_module": 3, "finit_module": 3,
	"reboot": 4, "syslog": 3, "process_vm_readv": 6, "process_vm_writev": 6, "open_by_handle_at": 3,
	"name_to_handle_at": 5, "fsopen": 2, "open_tree": 3, "move_mount": 5, "acct": 1,
}

// Summary renders a denied call with its arguments: named constants where
// the first argument selects an operation (ptrace requests, keyctl
// operations, socket families, namespace flags), small numbers in decimal,
// pointers and large values in hex. Pointed-to memory is never read.
func Summary(nr int32, args [6]uint64) string {
	name := SyscallName(nr)
	n := 6
	if c, ok := argCount[name]; ok {
		n = c
	}
	parts := make([]string, n)
	for i := range n {
		parts[i] = num(args[i])
	}
	switch name {
	case "ptrace":
		parts[0] = constName(ptraceRequests, args[0])
		parts[1] = strconv.FormatInt(int64(int32(args[1])), 10)
	case "keyctl":
		parts[0] = constName(keyctlOps, args[0])
	case "socket":
		parts[0] = constName(families, args[0])
	case "unshare":
		parts[0] = flagNames(args[0])
	case "setns":
		parts[1] = flagNames(args[1])
	case "clone":
		parts[0] = flagNames(args[0])
	}
	return name + "(" + strings.Join(parts, ", ") + ")"
}

func num(v uint64) string {
	if v < 1<<16 {
		return strconv.FormatUint(v, 10)
	}
	return "0x" + strconv.FormatUint(v, 16)
}

func constName(names map[uint64]string, v uint64) string {
	if s, ok := names[v]; ok {
		return s
	}
	return num(v)
}

var ptraceRequests = map[uint64]string{
	unix.PTRACE_TRACEME: "PTRACE_TRACEME", unix.PTRACE_PEEKTEXT: "PTRACE_PEEKTEXT", unix.PTRACE_PEEKDATA: "PTRACE_PEEKDATA",
	unix.PTRACE_POKETEXT: "PTRACE_POKETEXT", unix.PTRACE_POKEDATA: "PTRACE_POKEDATA", unix.PTRACE_CONT: "PTRACE_CONT",
	unix.PTRACE_KILL: "PTRACE_KILL", unix.PTRACE_ATTACH: "PTRACE_ATTACH", unix.PTRACE_DETACH: "PTRACE_DETACH",
	unix.PTRACE_SEIZE: "PTRACE_SEIZE", unix.PTRACE_GETREGS: "PTRACE_GETREGS", unix.PTRACE_SETREGS: "PTRACE_SETREGS",
	unix.PTRACE_SYSCALL: "PTRACE_SYSCALL", unix.PTRACE_INTERRUPT: "PTRACE_INTERRUPT",
}

var keyctlOps = map[uint64]string{
	unix.KEYCTL_GET_KEYRING_ID: "KEYCTL_GET_KEYRING_ID", unix.KEYCTL_JOIN_SESSION_KEYRING: "KEYCTL_JOIN_SESSION_KEYRING",
	unix.KEYCTL_UPDATE: "KEYCTL_UPDATE", unix.KEYCTL_REVOKE: "KEYCTL_REVOKE", unix.KEYCTL_DESCRIBE: "KEYCTL_DESCRIBE",
	unix.KEYCTL_SEARCH: "KEYCTL_SEARCH", unix.KEYCTL_READ: "KEYCTL_READ", unix.KEYCTL_LINK: "KEYCTL_LINK",
}

var families = map[uint64]string{
	unix.AF_UNIX: "AF_UNIX", unix.AF_INET: "AF_INET", unix.AF_INET6: "AF_INET6", unix.AF_NETLINK: "AF_NETLINK",
	unix.AF_PACKET: "AF_PACKET", unix.AF_VSOCK: "AF_VSOCK", unix.AF_ALG: "AF_ALG", unix.AF_KEY: "AF_KEY",
	unix.AF_BLUETOOTH: "AF_BLUETOOTH", unix.AF_XDP: "AF_XDP",
}

var nsFlags = []struct {
	v    uint64
	name string
}{
	{unix.CLONE_NEWUSER, "CLONE_NEWUSER"}, {unix.CLONE_NEWNS, "CLONE_NEWNS"}, {unix.CLONE_NEWPID, "CLONE_NEWPID"},
	{unix.CLONE_NEWNET, "CLONE_NEWNET"}, {unix.CLONE_NEWUTS, "CLONE_NEWUTS"}, {unix.CLONE_NEWIPC, "CLONE_NEWIPC"},
	{unix.CLONE_NEWCGROUP, "CLONE_NEWCGROUP"}, {unix.CLONE_NEWTIME, "CLONE_NEWTIME"},
}

// flagNames names the namespace flags in v; the rest stays a hex number.
func flagNames(v uint64) string {
	var out []string
	for _, f := range nsFlags {
		if v&f.v != 0 {
			out = append(out, f.name)
			v &^= f.v
		}
	}
	if v != 0 || len(out) == 0 {
		out = append(out, num(v))
	}
	return strings.Join(out, "|")
}
