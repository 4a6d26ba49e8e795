package seccompnotify

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/e2sgate/e2sgate/internal/testutil"
)

const childEnv = "E2S_SECCOMPNOTIFY_CHILD"

// TestMain runs the child side: a process that installs a filter sending
// ptrace and keyctl to a listener, hands the listener fd to the agent as
// runc does, and tries both.
func TestMain(m *testing.M) {
	if sock := os.Getenv(childEnv); sock != "" {
		os.Exit(child(sock))
	}
	os.Exit(m.Run())
}

func child(sock string) int {
	runtime.LockOSThread() // the filter confines this thread only
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	jeq := func(k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jt: jt, Jf: jf}
	}
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	f := []unix.SockFilter{ld(0), jeq(unix.SYS_PTRACE, 2, 0), jeq(unix.SYS_KEYCTL, 1, 0), ret(unix.SECCOMP_RET_ALLOW), ret(unix.SECCOMP_RET_USER_NOTIF)}
	prog := unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("no_new_privs:", err)
		return 1
	}
	fd, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&prog)))
	if e != 0 {
		fmt.Println("seccomp:", e)
		return 1
	}
	// What runc sends: the container process state, the fd attached.
	st, _ := json.Marshal(specs.ContainerProcessState{Version: specs.Version, Fds: []string{specs.SeccompFdName}, Pid: os.Getpid(),
		Metadata: "purchasing", State: specs.State{ID: "e2sgate-purchasing"}})
	c, err := net.Dial("unix", sock)
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	if _, _, err := c.(*net.UnixConn).WriteMsgUnix(st, unix.UnixRights(int(fd)), nil); err != nil {
		fmt.Println("send:", err)
		return 1
	}
	c.Close()
	unix.Close(int(fd))
	var out []string
	for range 3 {
		_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_ATTACH, 1, 0, 0, 0, 0)
		out = append(out, unix.ErrnoName(e))
	}
	_, _, e = unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, 0xfffffffd, 0)
	out = append(out, unix.ErrnoName(e))
	fmt.Println(strings.Join(out, " "))
	return 0
}

// TestAgentAnswersAndReports: every notified call fails with EPERM, as the
// profile's default would, and each is reported with the compartment from
// runc's metadata, the syscall and its arguments, pid and comm.
func TestAgentAnswersAndReports(t *testing.T) {
	if b, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail"); err != nil || !strings.Contains(string(b), "user_notif") {
		testutil.Missing(t, "seccomp user notification (kernel >= 5.0)")
	}
	var mu sync.Mutex
	var got []Denial
	a, err := Listen(filepath.Join(t.TempDir(), "seccomp.sock"), func(d Denial) {
		mu.Lock()
		got = append(got, d)
		mu.Unlock()
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+a.Path())
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "EPERM EPERM EPERM EPERM" {
		t.Fatalf("child: %v: %q, want every call EPERM", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("reported %d denials, want 4: %+v", len(got), got)
	}
	pid := fmt.Sprint("pid=", cmd.Process.Pid)
	for i, d := range got {
		want := "ptrace(PTRACE_ATTACH, 1, 0, 0) "
		if i == 3 {
			want = "keyctl(KEYCTL_GET_KEYRING_ID, 0xfffffffd, 0, "
		}
		if d.Compartment != "purchasing" || d.Syscall != SyscallName(int32(map[bool]int{false: unix.SYS_PTRACE, true: unix.SYS_KEYCTL}[i == 3])) ||
			!strings.HasPrefix(d.Detail, want) || !strings.Contains(d.Detail, pid) || !strings.Contains(d.Detail, "exe=seccompnotify") {
			t.Errorf("denial %d: %+v, want %s… %s exe=seccompnotify.test", i, d, want, pid)
		}
	}
}

// TestAgentRefusesBadHandover: a connection without exactly one fd, or
// with a state that is not JSON, is refused and the agent keeps serving;
// its socket is root's only (0600).
func TestAgentRefusesBadHandover(t *testing.T) {
	a, err := Listen(filepath.Join(t.TempDir(), "seccomp.sock"), func(Denial) { t.Error("denial from a refused fd") }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if fi, err := os.Stat(a.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	for _, tt := range []struct {
		name string
		data []byte
		oob  []byte
	}{
		{"no fd", []byte(`{"metadata":"outside"}`), nil},
		{"two fds", []byte(`{"metadata":"outside"}`), unix.UnixRights(int(r.Fd()), int(w.Fd()))},
		{"not json", []byte("<<<"), unix.UnixRights(int(r.Fd()))},
	} {
		c, err := net.Dial("unix", a.Path())
		if err != nil {
			t.Fatalf("%s: agent stopped serving: %v", tt.name, err)
		}
		c.(*net.UnixConn).WriteMsgUnix(tt.data, tt.oob, nil)
		// The agent closes the connection once it refused the handover.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || os.IsTimeout(err) {
			t.Errorf("%s: connection not closed by the agent: %d, %v", tt.name, n, err)
		}
		c.Close()
	}
}

func TestSummary(t *testing.T) {
	for _, tt := range []struct {
		nr   int32
		args [6]uint64
		want string
	}{
		{unix.SYS_PTRACE, [6]uint64{unix.PTRACE_ATTACH, 1}, "ptrace(PTRACE_ATTACH, 1, 0, 0)"},
		{unix.SYS_UNSHARE, [6]uint64{unix.CLONE_NEWUSER | unix.CLONE_NEWNS}, "unshare(CLONE_NEWUSER|CLONE_NEWNS)"},
		{unix.SYS_SOCKET, [6]uint64{unix.AF_NETLINK, unix.SOCK_RAW, 0}, "socket(AF_NETLINK, 3, 0)"},
		{unix.SYS_MOUNT, [6]uint64{0x7f0000001000, 0x7f0000002000, 0x7f0000003000, 0, 0}, "mount(0x7f0000001000, 0x7f0000002000, 0x7f0000003000, 0, 0)"},
		{9999, [6]uint64{1, 2, 3, 4, 5, 6}, "syscall_9999(1, 2, 3, 4, 5, 6)"},
	} {
		if got := Summary(tt.nr, tt.args); got != tt.want {
			t.Errorf("Summary(%d) = %q, want %q", tt.nr, got, tt.want)
		}
	}
}
