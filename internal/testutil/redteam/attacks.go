//go:build linux

package redteam

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// prober runs the attacks of one Plan.
type prober struct {
	plan Plan
	out  []Result
	gate *protocol.Gate
	seq  int
	// searchStep is the last search's step (search).
	searchStep struct {
		what string
		err  error
	}
}

// Run tries every attack that applies to p.Compartment and returns the
// outcomes. The caller must already be confined as the compartment is
// (its Landlock rules applied).
func Run(p Plan) []Result {
	r := &prober{plan: p}
	r.controls()
	r.files()
	r.processes()
	r.privilege()
	r.sockets()
	r.network()
	if p.GateSocket != "" {
		g, err := protocol.DialGate(p.GateSocket)
		if err != nil {
			r.add(Result{Name: "gate-dial", Class: "gate", Steps: []string{err.Error()}})
		} else {
			r.gate = g
			r.calls()
			r.floods()
			g.Close()
		}
	}
	return r.out
}

func (r *prober) add(res Result) { r.out = append(r.out, res) }

// errnoName is "EPERM" for a syscall.Errno anywhere in err's chain.
func errnoName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	if err != nil {
		return "error"
	}
	return ""
}

func step(what string, err error) string {
	if err == nil {
		return what + ": ok"
	}
	if n := errnoName(err); n != "error" {
		return what + ": " + n
	}
	return what + ": " + err.Error()
}

// kernel records one kernel-class attack: the steps in order, each with
// its error; the attack succeeds if its decisive step (the first) does.
func (r *prober) kernel(name string, audit []Want, steps ...struct {
	what string
	err  error
}) {
	res := Result{Name: name, Class: "kernel", Audit: audit}
	for i, s := range steps {
		if strings.HasPrefix(s.what, "(") { // a step not taken
			continue
		}
		res.Steps = append(res.Steps, step(s.what, s.err))
		if i == 0 {
			res.OK = s.err == nil
			res.Errno = errnoName(s.err)
		}
	}
	r.add(res)
}

type st = struct {
	what string
	err  error
}

// controls are what the party may do; each must succeed.
func (r *prober) controls() {
	control := func(name string, err error, what string) {
		res := Result{Name: name, Class: "control", OK: err == nil, Errno: errnoName(err), Steps: []string{step(what, err)}}
		r.add(res)
	}
	if d := r.plan.Own["data"]; d != "" {
		p := filepath.Join(d, "redteam-control")
		err := os.WriteFile(p, []byte("ok"), 0o600)
		if err == nil {
			err = os.Remove(p)
		}
		control("control-own-data", err, "write and remove "+p)
	}
	if p := r.plan.Own["plugin"]; p != "" {
		control("control-plugin-socket", dial("unix", p), "connect "+p)
	}
	if r.plan.GateSocket != "" {
		control("control-gate-socket", dial("unix", r.plan.GateSocket), "connect "+r.plan.GateSocket)
	}
}

// --- files -----------------------------------------------------------------

// files: other compartments' data and keys, the audit trail, the rules. A
// file that is not in the probe's mount namespace at all fails ENOENT,
// which no layer reports; the attacker's search for it (listing the
// nearest directory it can see) is what Landlock refuses and reports.
func (r *prober) files() {
	names := make([]string, 0, len(r.plan.Files))
	for n := range r.plan.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := r.plan.Files[n]
		_, err := os.ReadFile(p)
		r.kernel("read-"+n, append([]Want{LandlockFS("fs.read_file", p)}, r.search(p, err)...), st{"read " + p, err}, r.searchStep)
	}
	// The supervisor's admin log: removing it would hide what operators did.
	if p := r.plan.Files["admin-log"]; p != "" {
		err := os.Remove(p)
		r.kernel("remove-admin-log", append([]Want{LandlockFS("fs.remove_file", p)}, r.search(p, err)...), st{"unlink " + p, err}, r.searchStep)
		if err == nil || !errors.Is(err, fs.ErrNotExist) { // it sees the audit directory: beside it
			p = filepath.Join(filepath.Dir(filepath.Dir(p)), "planted")
			werr := os.WriteFile(p, nil, 0o600)
			rerr := unix.Mount("", filepath.Dir(p), "", unix.MS_REMOUNT|unix.MS_BIND, "")
			r.kernel("write-beside-audit-dir", []Want{LandlockFS("fs.make_reg", filepath.Dir(p)), Seccomp("mount")},
				st{"create " + p, werr}, st{"remount " + filepath.Dir(p) + " rw", rerr})
		}
	}
	// Writes: static content, the root filesystem, its own program, the
	// policy. A read-only mount answers EROFS before any layer that
	// reports; turning it writable (a remount) is what seccomp refuses.
	write := func(name, p string, create bool) {
		var err error
		if create {
			err = os.WriteFile(p, []byte("x"), 0o644)
		} else {
			err = overwrite(p)
		}
		dir := nearestDir(p)
		rerr := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND, "")
		ll := LandlockFS("fs.write_file", p)
		if create {
			ll = LandlockFS("fs.make_reg", filepath.Dir(p))
		}
		r.kernel(name, []Want{ll, Seccomp("mount")}, st{"write " + p, err}, st{"remount " + dir + " rw", rerr})
	}
	if r.plan.Static != "" {
		write("write-static", r.plan.Static, false)
		write("write-static-new", filepath.Join(filepath.Dir(r.plan.Static), "evil.html"), true)
	}
	write("write-rootfs", "/evil", true)
	write("write-etc-hosts", "/etc/hosts", false)
	self, _ := os.Executable()
	write("write-own-binary", self, false)
	if r.plan.Policy != "" {
		write("write-policy", r.plan.Policy, false)
	}
	// Exec of a dropped binary: the tmpfs is noexec (EACCES, not
	// reported); the way around it, an anonymous executable file, is
	// memfd_create, which seccomp refuses.
	b, _ := os.ReadFile(self)
	werr := os.WriteFile("/tmp/dropped", b, 0o700)
	eerr := spawn("/tmp/dropped")
	_, _, e := unix.Syscall(unix.SYS_MEMFD_CREATE, uintptr(unsafe.Pointer(&[]byte("x\x00")[0])), 0, 0)
	os.Remove("/tmp/dropped")
	r.kernel("exec-tmpfs", []Want{Seccomp("memfd_create"), LandlockFS("fs.make_reg", "/tmp")},
		st{"execve /tmp/dropped", eerr}, st{"write /tmp/dropped", werr}, st{"memfd_create", errOf(e)})
	_, lerr := os.ReadDir("/bin")
	r.kernel("exec-shell", []Want{LandlockFS("fs.read_dir", "/bin")}, st{"execve /bin/sh", spawn("/bin/sh")}, st{"list /bin", lerr})
}

// search is what an attacker does when p is not there (ENOENT: not in its
// mount namespace, which no layer reports): list the deepest directory
// above p it can see, looking for it. It returns the record that accounts
// for the search and leaves the step in r.searchStep; when p was there
// (another error, or none) there is no search.
func (r *prober) search(p string, err error) []Want {
	r.searchStep = st{"no search", nil}
	if !errors.Is(err, fs.ErrNotExist) {
		r.searchStep.what = "(found: no search)"
		return nil
	}
	dir := nearestDir(p)
	_, lerr := os.ReadDir(dir)
	r.searchStep = st{"list " + dir, lerr}
	return []Want{LandlockFS("fs.read_dir", dir)}
}

// nearestDir is the deepest existing directory above p (what an attacker
// lists to look for p).
func nearestDir(p string) string {
	d := filepath.Dir(p)
	for d != "/" {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
		d = filepath.Dir(d)
	}
	return d
}

// spawn starts path (it would print its usage and exit) and waits for it.
func spawn(path string) error {
	cmd := exec.Command(path, "-h")
	// Pipes, not /dev/null (which the gate agent's rules leave out): the
	// exec itself is what is tried.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(""), io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil
}

func overwrite(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write([]byte("x"))
	return err
}

func errOf(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// --- processes ---------------------------------------------------------------

func (r *prober) processes() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err := unix.PtraceAttach(1)
	if err == nil {
		unix.PtraceDetach(1)
	}
	r.kernel("ptrace-pid1", []Want{Seccomp("ptrace")}, st{"ptrace(PTRACE_ATTACH, 1)", err})
	_, _, e := unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
	r.kernel("ptrace-traceme", []Want{Seccomp("ptrace")}, st{"ptrace(PTRACE_TRACEME)", errOf(e)})
	buf := make([]byte, 64)
	local := []unix.Iovec{{Base: &buf[0], Len: 64}}
	remote := []unix.RemoteIovec{{Base: 0x400000, Len: 64}}
	_, err = unix.ProcessVMReadv(1, local, remote, 0)
	r.kernel("process-vm-readv", []Want{Seccomp("process_vm_readv")}, st{"process_vm_readv(1)", err})
	_, _, e = unix.Syscall(unix.SYS_KCMP, 1, uintptr(os.Getpid()), 0)
	r.kernel("kcmp", []Want{Seccomp("kcmp")}, st{"kcmp(1)", errOf(e)})
	_, _, e = unix.Syscall(unix.SYS_PIDFD_GETFD, 0, 0, 0)
	r.kernel("pidfd-getfd", []Want{Seccomp("pidfd_getfd")}, st{"pidfd_getfd", errOf(e)})
	// Other processes by host pid: not in its pid namespace (ESRCH, not
	// reported); looking for them in /proc is what Landlock refuses.
	names := make([]string, 0, len(r.plan.Pids))
	for n := range r.plan.Pids {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		pid := r.plan.Pids[n]
		kerr := unix.Kill(pid, unix.SIGKILL)
		_, lerr := os.ReadDir("/proc")
		r.kernel("kill-"+n, []Want{LandlockFS("fs.read_dir", "/proc")}, st{fmt.Sprintf("kill(%d, SIGKILL)", pid), kerr}, st{"list /proc", lerr})
	}
}

// --- privilege ---------------------------------------------------------------

func (r *prober) privilege() {
	sys := func(name, syscallName string, nr uintptr, args ...uintptr) {
		a := append(args, 0, 0, 0, 0, 0, 0)
		_, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		r.kernel(name, []Want{Seccomp(syscallName)}, st{syscallName, errOf(e)})
	}
	tmp := uintptr(unsafe.Pointer(&[]byte("/tmp\x00")[0]))
	tmpfs := uintptr(unsafe.Pointer(&[]byte("tmpfs\x00")[0]))
	root := uintptr(unsafe.Pointer(&[]byte("/\x00")[0]))
	sys("mount-tmpfs", "mount", unix.SYS_MOUNT, tmpfs, tmp, tmpfs, 0, 0)
	sys("remount-root-rw", "mount", unix.SYS_MOUNT, 0, root, 0, unix.MS_REMOUNT|unix.MS_BIND, 0)
	sys("umount", "umount2", unix.SYS_UMOUNT2, tmp, unix.MNT_DETACH)
	sys("chroot", "chroot", unix.SYS_CHROOT, tmp)
	sys("pivot-root", "pivot_root", unix.SYS_PIVOT_ROOT, tmp, tmp)
	sys("open-tree", "open_tree", unix.SYS_OPEN_TREE, uintptr(atFDCWD), root, unix.OPEN_TREE_CLONE)
	sys("unshare-userns", "unshare", unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	sys("unshare-mntns", "unshare", unix.SYS_UNSHARE, unix.CLONE_NEWNS)
	sys("unshare-netns", "unshare", unix.SYS_UNSHARE, unix.CLONE_NEWNET)
	sys("setns", "setns", unix.SYS_SETNS, 0, unix.CLONE_NEWNET)
	sys("clone-newuser", "clone", unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD))
	sys("setuid-root", "setuid", unix.SYS_SETUID, 0)
	sys("setgid-root", "setgid", unix.SYS_SETGID, 0)
	sys("setresuid-root", "setresuid", unix.SYS_SETRESUID, 0, 0, 0)
	sys("setgroups", "setgroups", unix.SYS_SETGROUPS, 0, 0)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Effective: 1 << unix.CAP_SYS_ADMIN, Permitted: 1 << unix.CAP_SYS_ADMIN}}
	sys("capset", "capset", unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])))
	sys("keyctl", "keyctl", unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0)
	sys("add-key", "add_key", unix.SYS_ADD_KEY, uintptr(unsafe.Pointer(&[]byte("user\x00")[0])), uintptr(unsafe.Pointer(&[]byte("k\x00")[0])), 0, 0, uintptr(0xfffffffd))
	// bpf: a socket filter program and an array map.
	insns := []uint64{0x00000000000000b7, 0x0000000000000095}
	license := []byte("GPL\x00")
	progAttr := struct {
		progType, insnCnt uint32
		insns, license    uint64
		rest              [96]byte
	}{progType: 1, insnCnt: 2, insns: uint64(uintptr(unsafe.Pointer(&insns[0]))), license: uint64(uintptr(unsafe.Pointer(&license[0])))}
	sys("bpf-prog-load", "bpf", unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&progAttr)), unsafe.Sizeof(progAttr))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	mapAttr := struct {
		mapType, keySize, valueSize, maxEntries uint32
		rest                                    [112]byte
	}{mapType: 2, keySize: 4, valueSize: 8, maxEntries: 1}
	sys("bpf-map-create", "bpf", unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&mapAttr)), unsafe.Sizeof(mapAttr))
	var params [120]byte
	sys("io-uring-setup", "io_uring_setup", unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params[0])))
	pattr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
	pattr.Size = uint32(unsafe.Sizeof(pattr))
	sys("perf-event-open", "perf_event_open", unix.SYS_PERF_EVENT_OPEN, uintptr(unsafe.Pointer(&pattr)), 0, ^uintptr(0), ^uintptr(0), 0)
	sys("userfaultfd", "userfaultfd", unix.SYS_USERFAULTFD, 0)
	sys("finit-module", "finit_module", unix.SYS_FINIT_MODULE, 0, 0, 0)
	sys("kexec-load", "kexec_load", unix.SYS_KEXEC_LOAD, 0, 0, 0, 0)
	sys("open-by-handle", "open_by_handle_at", unix.SYS_OPEN_BY_HANDLE_AT, uintptr(atFDCWD), 0, 0)
	sys("reboot", "reboot", unix.SYS_REBOOT, unix.LINUX_REBOOT_MAGIC1, unix.LINUX_REBOOT_MAGIC2, unix.LINUX_REBOOT_CMD_CAD_OFF)
}

// --- sockets ---------------------------------------------------------------

// sockets: kinds of socket it may not open, and unix sockets of others.
func (r *prober) sockets() {
	sock := func(name string, domain, typ, proto int) {
		fd, err := unix.Socket(domain, typ, proto)
		if err == nil {
			unix.Close(fd)
		}
		r.kernel(name, []Want{Seccomp("socket"), SockCreate(domain, typ, proto)},
			st{fmt.Sprintf("socket(%d, %d, %d)", domain, typ, proto), err})
	}
	sock("socket-raw", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	sock("socket-packet", unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	sock("socket-netlink-route", unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
	sock("socket-netlink-audit", unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT)
	sock("socket-mptcp", unix.AF_INET, unix.SOCK_STREAM, 262)
	sock("socket-vsock", unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	names := make([]string, 0, len(r.plan.Sockets))
	for n := range r.plan.Sockets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := r.plan.Sockets[n]
		err := dial("unix", p)
		r.kernel("connect-"+strings.ReplaceAll(n, "_", "-")+"-socket", r.search(p, err),
			st{"connect " + p, err}, r.searchStep)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func dial(network, addr string) error {
	c, err := net.DialTimeout(network, addr, 2*time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

// --- network -----------------------------------------------------------------

func (r *prober) network() {
	names := make([]string, 0, len(r.plan.Addrs))
	for n := range r.plan.Addrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		addr := r.plan.Addrs[n]
		family := unix.AF_INET
		if strings.HasPrefix(addr, "[") {
			family = unix.AF_INET6
		}
		r.kernel("tcp-"+n, TCP(addr, family), st{"connect tcp " + addr, dial("tcp", addr)})
		if strings.HasPrefix(addr, "127.") {
			// The host's loopback address is the compartment's own
			// loopback in its namespace: a datagram there stays home.
			continue
		}
		r.kernel("udp-"+n, UDP(addr, family), st{"sendto udp " + addr, sendUDP(addr)})
	}
}

// sendUDP sends one datagram to addr (unconnected: sendmsg, as a DNS
// client or a covert channel would).
func sendUDP(addr string) error {
	ap, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	domain := unix.AF_INET
	if ap.IP.To4() == nil {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var sa unix.Sockaddr
	if domain == unix.AF_INET {
		s := &unix.SockaddrInet4{Port: ap.Port}
		copy(s.Addr[:], ap.IP.To4())
		sa = s
	} else {
		s := &unix.SockaddrInet6{Port: ap.Port}
		copy(s.Addr[:], ap.IP.To16())
		sa = s
	}
	return unix.Sendto(fd, []byte("x"), 0, sa)
}

// --- calls through the gate ------------------------------------------------

func (r *prober) reqID(name string) string {
	r.seq++
	return fmt.Sprintf("%s-%02d-%s", r.plan.Token, r.seq, name)
}

// call makes one call through the compartment's own gate socket; the
// attack succeeds if the gate forwards it and the target answers 2xx.
func (r *prober) call(name string, c *callpb.Call) {
	c.ReqId = r.reqID(name)
	res := Result{Name: name, Class: "gate", Audit: []Want{{ReqID: c.ReqId}}}
	resp, err := r.gate.Call(context.Background(), c)
	if err != nil {
		res.Steps = []string{err.Error()}
		res.Errno = "error"
	} else {
		res.Status, res.Reason = int(resp.GetStatus()), resp.GetHeaders()["X-E2S-Reason"]
		res.OK = res.Status >= 200 && res.Status < 300
		res.Steps = []string{fmt.Sprintf("%s %s: %d %s", c.Method, clipShow(c.Script), res.Status, res.Reason)}
	}
	r.add(res)
}

func clipShow(s string) string {
	s = strconv.Quote(s)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// calls are what a compromised compartment sends the gate: scripts it is
// not registered for, above its label, under another caller's name, with
// path tricks, forged identities and replayed signatures, over its sizes.
func (r *prober) calls() {
	me := r.plan.Compartment
	// A script this compartment may not call, and one whose clearance is
	// above its label; purchasing is registered for the key handler's.
	forbidden, spoofAs := "keyhandler/sign-offer", "purchasing"
	if me == "purchasing" {
		forbidden, spoofAs = "purchasing/delivered", "inside"
	}
	post := func(script string, body []byte) *callpb.Call {
		return &callpb.Call{Script: script, Method: "POST", Body: body, Meta: map[string]string{"CONTENT_TYPE": "application/json", "REQUEST_METHOD": "POST"}}
	}
	get := func(script string) *callpb.Call {
		return &callpb.Call{Script: script, Method: "GET", Meta: map[string]string{"REQUEST_METHOD": "GET"}}
	}
	r.call("unregistered-script", get("purchasing/admin"))
	r.call("unregistered-target", get("gate/status"))
	r.call("unregistered-export-key", get("keyhandler/export"))
	r.call("not-permitted", post(forbidden, []byte(`{}`)))
	for _, s := range []string{"keyhandler/countersign", "keyhandler/protect", "payment/authorize", "payment/capture", "payment/limits", "inside/order", "purchasing/delivered"} {
		if s == forbidden || permitted(me, s) {
			continue
		}
		r.call("higher-label-"+strings.ReplaceAll(s, "/", "-"), post(s, []byte(`{}`)))
	}
	spoof := post(forbidden, []byte(`{}`))
	spoof.Caller = spoofAs
	r.call("caller-spoof", spoof)
	spoofMeta := post(forbidden, []byte(`{}`))
	spoofMeta.Meta["E2S_CALLER"], spoofMeta.Meta["REMOTE_USER"] = spoofAs, spoofAs
	r.call("caller-spoof-meta", spoofMeta)
	for _, t := range []struct{ name, script string }{
		{"path-dotdot", "purchasing/../" + forbidden},
		{"path-pct-dotdot", "purchasing/%2e%2e/" + forbidden},
		{"path-nul", forbidden + "\x00"},
		{"path-nul-mid", "purchasing/catalogue\x00/../../" + forbidden},
		{"path-double-slash", strings.Replace(forbidden, "/", "//", 1)},
		{"path-case", strings.ToUpper(forbidden)},
		{"path-trailing", forbidden + "/"},
		{"path-overlong", "purchasing/" + strings.Repeat("a", 8<<10)},
	} {
		r.call(t.name, post(t.script, []byte(`{}`)))
	}
	// Identity: a registered manager's certificate (public) as if outside
	// had seen it in a TLS handshake, and her name as the user.
	forged := get("purchasing/statement")
	forged.User = "cert:" + clip16(r.plan.ManagerFP)
	for k, v := range map[string]string{"HTTPS": "on", "SSL_CLIENT_CERT": r.plan.ManagerCert, "SSL_CLIENT_FINGERPRINT": r.plan.ManagerFP, "SSL_CLIENT_VERIFY": "SUCCESS"} {
		forged.Meta[k] = v
	}
	r.call("forged-client-cert", forged)
	user := get("purchasing/private")
	user.User = "cert:" + clip16(r.plan.ManagerFP)
	user.Meta["REMOTE_USER"] = "Mia"
	r.call("forged-user", user)
	if len(r.plan.Replay) > 0 {
		rep := get("purchasing/private")
		for k, v := range r.plan.Replay {
			rep.Meta[k] = v
		}
		r.call("replayed-signature", rep)
		alt := get("purchasing/private")
		for k, v := range r.plan.Replay {
			alt.Meta[k] = v
		}
		alt.Meta["HTTP_E2S_NONCE"] = strings.Repeat("A", 32) // a fresh nonce under the old signature
		r.call("replayed-signature-new-nonce", alt)
		stmt := get("purchasing/statement")
		for k, v := range r.plan.Replay {
			stmt.Meta[k] = v
		}
		r.call("replayed-signature-other-script", stmt)
	}
	r.call("method-not-allowed", post("purchasing/catalogue", []byte(`{}`)))
	r.call("body-over-registration", post("purchasing/basket", bytes.Repeat([]byte("a"), 70<<10)))
}

// permitted is whether compartment me is a registered caller of script
// (policies/registry.yaml): then calling it is its job, not an attack.
func permitted(me, script string) bool {
	switch me {
	case "purchasing":
		return strings.HasPrefix(script, "keyhandler/") || strings.HasPrefix(script, "payment/") || script == "inside/order"
	case "inside":
		return script == "purchasing/delivered"
	}
	return false
}

func clip16(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}

// floods: an oversized message, many connections, many calls.
func (r *prober) floods() {
	me := r.plan.Compartment
	// A message over what any of its registrations allows: refused by the
	// transport before the agent sees it.
	big := &callpb.Call{Script: "purchasing/basket", Method: "POST", Body: make([]byte, 6<<20), ReqId: r.reqID("oversized")}
	_, err := r.gate.Call(context.Background(), big)
	res := Result{Name: "oversized-message", Class: "gate", OK: err == nil, Errno: grpcCode(err), Steps: []string{step("6 MiB call", err)},
		Audit: []Want{{Kinds: []string{"gate/transport"}, Reason: "gate.message_too_large"}}}
	r.add(res)

	// Connections: more than the gate lets one caller hold open. The gate
	// closes the ones over its limit at once; the others stay open.
	n := r.plan.FloodConns
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("unix", r.plan.GateSocket)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	refused := 0
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			// An accepted connection gets the server's HTTP/2 settings; a
			// refused one is closed before anything is written.
			if _, err := c.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				mu.Lock()
				refused++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	r.add(Result{Name: "connection-flood", Class: "gate", OK: refused == 0, Errno: "EOF",
		Steps: []string{fmt.Sprintf("%d connections opened, %d closed by the gate at once", len(conns), refused)},
		Audit: []Want{{Kinds: []string{"gate/limit"}, Reason: "gate.too_many_connections"}}})

	// Calls: many at once, past the caller's rate budget.
	var ok, limited, other int
	sem := make(chan struct{}, 32)
	for i := range r.plan.FloodCalls {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			resp, err := r.gate.Call(context.Background(), &callpb.Call{Script: "purchasing/admin", Method: "GET", ReqId: fmt.Sprintf("%s-flood-%d", r.plan.Token, i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				other++
			case resp.GetStatus() == 429:
				limited++
			case resp.GetStatus() < 300:
				ok++
			default:
				other++
			}
		}()
	}
	wg.Wait()
	res = Result{Name: "call-flood", Class: "gate", OK: limited == 0,
		Steps: []string{fmt.Sprintf("%d calls by %s: %d answered 429, %d otherwise refused, %d served", r.plan.FloodCalls, me, limited, other, ok)},
		Audit: []Want{{Kinds: []string{"gate/limit"}, Reason: "gate.rate_limited"}}}
	if limited > 0 {
		res.Status, res.Reason = 429, "gate.rate_limited"
	}
	r.add(res)
}

func grpcCode(err error) string {
	if err == nil {
		return ""
	}
	if s := err.Error(); strings.Contains(s, "ResourceExhausted") {
		return "ResourceExhausted"
	}
	return "error"
}

var atFDCWD = unix.AT_FDCWD
