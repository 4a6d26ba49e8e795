// Command probe plays a compromised compartment program. It is built by the
// sandbox tests, put into a real compartment image and run under the same
// Spec the supervisor uses. Modes:
//
//	probe attack -victim PID -key PATH -static DIR -hostport N ...
//	    tries every attack and prints one JSON Result per line
//	probe legit -rw DIR -port N
//	    does what a real compartment does (files, TLS roots, HTTP on
//	    loopback, gRPC on a unix socket) and prints one Result per step
//	probe sleep
//	    a victim: prints "ready" and waits to be killed
//	probe serve-fd
//	    the outside compartment's shape: serves one connection on the
//	    listening socket handed over as fd 3, reports whether it has a
//	    network of its own
//
// Like a real compartment program it calls landlock.RestrictSelf first (the
// -no-landlock flag leaves it out, to show the lower layers hold alone).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"crypto/x509"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
)

// Result is one line of the probe's report.
type Result struct {
	Name string `json:"name"`
	// OK: the operation succeeded. For an attack that is a breach.
	OK     bool   `json:"ok"`
	Err    string `json:"err,omitempty"`
	Detail string `json:"detail,omitempty"`
}

var out = json.NewEncoder(os.Stdout)

func report(name string, err error, detail string) {
	r := Result{Name: name, OK: err == nil, Detail: detail}
	if err != nil {
		r.Err = err.Error()
	}
	_ = out.Encode(r)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe attack|legit|sleep|forkbomb|balloon [flags]")
		os.Exit(2)
	}
	mode := os.Args[1]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	noLandlock := fs.Bool("no-landlock", false, "do not apply Landlock")
	victim := fs.Int("victim", 0, "host pid of another compartment")
	supervisor := fs.Int("supervisor", 0, "host pid of the supervisor")
	key := fs.String("key", "", "path of another compartment's key file")
	static := fs.String("static", "", "static content directory (read-only mount)")
	rw := fs.String("rw", "", "writable directory")
	hostPort := fs.Int("hostport", 0, "port listening on the host's loopback")
	port := fs.Int("port", 0, "loopback port for the legit HTTP test")
	limitMB := fs.Int("balloon-mb", 1024, "how far the balloon tries to grow")
	_ = fs.Parse(os.Args[2:])

	switch mode {
	case "forkbomb":
		os.Exit(forkbombChild())
	case "balloon":
		os.Exit(balloonChild(*limitMB))
	}
	if !*noLandlock {
		if err := landlock.RestrictSelf(); err != nil {
			report("landlock", err, "")
			os.Exit(1)
		}
		report("landlock", nil, "abi="+strconv.Itoa(landlock.ABI()))
	}
	switch mode {
	case "attack":
		attacks(*victim, *supervisor, *key, *static, *hostPort, *limitMB)
	case "legit":
		legit(*rw, *port)
	case "serve-fd":
		serveFD()
	case "sleep":
		fmt.Println(`{"name":"ready","ok":true}`)
		for {
			time.Sleep(time.Hour)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(2)
	}
	fmt.Println(`{"name":"done","ok":true}`)
}

func attacks(victim, supervisor int, key, static string, hostPort, balloonMB int) {
	self, _ := os.Executable()

	// Files.
	_, err := os.ReadFile(key)
	report("read-other-compartment-key", err, key)
	report("write-static-new-file", os.WriteFile(filepath.Join(static, "evil.html"), []byte("x"), 0o644), "")
	report("write-static-overwrite", overwrite(filepath.Join(static, "index.html")), "")
	report("write-rootfs-new-file", os.WriteFile("/evil", []byte("x"), 0o644), "")
	report("write-rootfs-etc-hosts", overwrite("/etc/hosts"), "")
	report("write-rootfs-own-binary", overwrite(self), "")
	report("write-rootfs-mkdir", os.Mkdir("/bin/evil", 0o755), "")

	// Other processes.
	for _, p := range []struct {
		name string
		pid  int
	}{{"victim", victim}, {"supervisor", supervisor}} {
		_, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.pid))
		report("proc-"+p.name+"-environ", err, "")
		_, err = os.ReadDir(fmt.Sprintf("/proc/%d/root/", p.pid))
		report("proc-"+p.name+"-root", err, "")
		report("ptrace-"+p.name, ptraceAttach(p.pid), "")
		report("kill-"+p.name, syscall.Kill(p.pid, syscall.SIGKILL), "")
	}
	report("proc-see-other-pids", otherPids(), "")
	report("proc-1-is-other", pid1IsOther(), "")
	report("kill-all", killAll(), "")

	// Privilege.
	report("mount-tmpfs", syscall.Mount("none", "/tmp", "tmpfs", 0, ""), "")
	report("mount-proc", syscall.Mount("proc", "/tmp", "proc", 0, ""), "")
	report("remount-root-rw", syscall.Mount("", "/", "", syscall.MS_REMOUNT|syscall.MS_BIND, ""), "")
	report("unshare-userns", spawn(self, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}), "")
	report("unshare-mntns-thread", unshareThread(syscall.CLONE_NEWNS), "")
	report("unshare-netns-thread", unshareThread(syscall.CLONE_NEWNET), "")
	report("setuid-root", setuid0(), "")
	report("bpf-prog-load", bpfProgLoad(), "")
	report("bpf-map-create", bpfMapCreate(), "")
	report("socket-raw", socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP), "")
	report("socket-packet", socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL))), "")
	report("socket-netlink-route", socket(syscall.AF_NETLINK, syscall.SOCK_RAW, syscall.NETLINK_ROUTE), "")
	report("socket-mptcp", socket(syscall.AF_INET, syscall.SOCK_STREAM, 262), "")
	report("keyctl", keyctl(), "")
	report("io-uring", ioUring(), "")
	report("chroot", syscall.Chroot("/tmp"), "")

	// Exec.
	report("exec-bin-sh", spawn("/bin/sh", nil), "")
	report("exec-tmpfs-binary", execFromTmp(self), "")

	// Network (more in the netns package's suite).
	if hostPort != 0 {
		report("connect-host-loopback", dial(fmt.Sprintf("127.0.0.1:%d", hostPort)), "")
	}
	_, err = net.DefaultResolver.LookupHost(context.Background(), "acquirer.example")
	report("dns-lookup", err, "")

	// Limits.
	cpuMS := cpuHog(time.Second)
	report("cpu-hog", nil, fmt.Sprintf("cpu_ms=%d", cpuMS))
	n, err := forkbomb(self)
	report("fork-bomb", err, fmt.Sprintf("forked=%d", n))
	peak, err := balloon(self, balloonMB)
	report("memory-balloon", err, fmt.Sprintf("reached_mb=%d", peak))
}

func overwrite(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write([]byte("x"))
	return err
}

// pid1IsOther succeeds if /proc/1 is not the probe itself (the host's init
// or another compartment's program).
func pid1IsOther() error {
	mine, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		return err
	}
	one, err := os.ReadFile("/proc/1/cmdline")
	if err != nil {
		return err
	}
	if string(one) == string(mine) {
		return errors.New("pid 1 is the probe itself")
	}
	return nil
}

func ptraceAttach(pid int) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := syscall.PtraceAttach(pid); err != nil {
		return err
	}
	_ = syscall.PtraceDetach(pid)
	return nil
}

// otherPids succeeds if /proc shows a process that is not ours: in a pid
// namespace only the probe's own tree (pid 1 and its children) exists.
func otherPids() error {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var seen []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			seen = append(seen, e.Name())
		}
	}
	if len(seen) == 1 && seen[0] == "1" {
		return fmt.Errorf("only own pid 1 visible")
	}
	return nil // a breach: shows what it saw
}

func killAll() error {
	// In its own pid namespace kill(-1) reaches only the probe's own
	// descendants (there are none now), so "success" with ESRCH is the
	// expected outcome; the test checks the victim survived.
	err := syscall.Kill(-1, syscall.SIGKILL)
	if err == nil {
		return nil
	}
	return err
}

func spawn(path string, attr *syscall.SysProcAttr) error {
	cmd := exec.Command(path, "sleep")
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return err
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil
}

func unshareThread(flags int) error {
	// A thread of a multi-threaded process may unshare mount/net.
	runtime.LockOSThread() // never unlocked: the thread dies with it
	return syscall.Unshare(flags)
}

func setuid0() error {
	_, _, e := syscall.RawSyscall(syscall.SYS_SETUID, 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func bpfProgLoad() error {
	// r0 = 0; exit — a socket filter.
	insns := []uint64{0x00000000000000b7, 0x0000000000000095}
	license := []byte("GPL\x00")
	attr := struct {
		progType, insnCnt uint32
		insns, license    uint64
		rest              [96]byte
	}{
		progType: 1, insnCnt: 2,
		insns:   uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license: uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	fd, _, e := syscall.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if e != 0 {
		return e
	}
	syscall.Close(int(fd))
	return nil
}

func bpfMapCreate() error {
	attr := struct {
		mapType, keySize, valueSize, maxEntries uint32
		rest                                    [112]byte
	}{mapType: 2, keySize: 4, valueSize: 8, maxEntries: 1} // array
	fd, _, e := syscall.Syscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if e != 0 {
		return e
	}
	syscall.Close(int(fd))
	return nil
}

func socket(domain, typ, proto int) error {
	fd, err := syscall.Socket(domain, typ, proto)
	if err != nil {
		return err
	}
	syscall.Close(fd)
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func keyctl() error {
	// KEYCTL_JOIN_SESSION_KEYRING with a new anonymous keyring.
	_, _, e := syscall.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func ioUring() error {
	var params [120]byte
	fd, _, e := syscall.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params[0])), 0)
	if e != 0 {
		return e
	}
	syscall.Close(int(fd))
	return nil
}

func execFromTmp(self string) error {
	b, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("copy self: %w", err)
	}
	p := "/tmp/dropped"
	if err := os.WriteFile(p, b, 0o755); err != nil {
		return fmt.Errorf("write to tmpfs: %w", err)
	}
	defer os.Remove(p)
	return spawn(p, nil)
}

func dial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// forkbomb runs the bomb in a child of its own process group and reports
// how many processes it got before the kernel refused. Success (nil) would
// mean it was never refused.
func forkbomb(self string) (int, error) {
	cmd := exec.Command(self, "forkbomb")
	b, err := cmd.Output()
	// If the bomb's own runtime died before it could clean up, its paused
	// copies are now ours (pid 1 of the namespace): kill(-1) from here
	// reaches every process of the namespace but the caller.
	syscall.Kill(-1, syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	reap()
	var n int
	var errno string
	fmt.Sscanf(string(b), "%d %s", &n, &errno)
	if err != nil && errno == "" {
		// The Go runtime of the bomb itself could not get a thread:
		// that, too, is the pids limit holding.
		return n, fmt.Errorf("bomb died: %v", err)
	}
	if errno == "" {
		return n, nil
	}
	return n, errors.New(errno)
}

// forkbombChild forks raw copies of itself that only pause, until fork
// fails; it prints "count errno" and kills its process group.
func forkbombChild() int {
	n := 0
	var errno syscall.Errno
	var pids []int
	for n < 100000 {
		pid, _, e := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
		if e != 0 {
			errno = e
			break
		}
		if pid == 0 {
			for {
				syscall.RawSyscall(syscall.SYS_PAUSE, 0, 0, 0)
			}
		}
		pids = append(pids, int(pid))
		n++
	}
	name := "none"
	if errno != 0 {
		name = unix.ErrnoName(errno)
	}
	fmt.Printf("%d %s\n", n, name)
	os.Stdout.Sync()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return 0
}

// reap collects zombies re-parented to the probe (it is pid 1 of its
// namespace).
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// balloon grows a child's memory until it is killed; it returns how far the
// child got. Success (nil) would mean it reached the target unharmed.
func balloon(self string, targetMB int) (int, error) {
	cmd := exec.Command(self, "balloon", "-balloon-mb", strconv.Itoa(targetMB))
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	peak := 0
	b, _ := io.ReadAll(stdout)
	for _, l := range strings.Fields(string(b)) {
		if v, err := strconv.Atoi(l); err == nil {
			peak = v
		}
	}
	err := cmd.Wait()
	if err == nil {
		return peak, nil
	}
	return peak, fmt.Errorf("balloon child: %w", err)
}

func balloonChild(targetMB int) int {
	var keep [][]byte
	for mb := 1; mb <= targetMB; mb++ {
		chunk := make([]byte, 1<<20)
		for i := 0; i < len(chunk); i += 4096 {
			chunk[i] = 1
		}
		keep = append(keep, chunk)
		if mb%8 == 0 {
			fmt.Println(mb)
		}
	}
	runtime.KeepAlive(keep)
	return 0
}

// legit does what a real compartment does, to prove confinement leaves the
// legitimate paths working.
func legit(rw string, port int) {
	_, err := x509.SystemCertPool()
	report("ca-roots", err, "")
	b, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err == nil && len(b) == 0 {
		err = errors.New("empty")
	}
	report("read-ca-file", err, "")
	report("write-tmp", os.WriteFile("/tmp/scratch", []byte("ok"), 0o600), "")
	if rw != "" {
		report("write-rw-mount", os.WriteFile(filepath.Join(rw, "state"), []byte("ok"), 0o600), "")
	}
	report("http-loopback", httpLoopback(port), "")
	if rw != "" {
		report("grpc-unix", grpcUnix(filepath.Join(rw, "plugin.sock")), "")
	}
	_, err = os.Hostname()
	report("hostname", err, "")
}

func httpLoopback(port int) error {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "pong")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/ping")
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "pong" {
		return fmt.Errorf("body %q", body)
	}
	return nil
}

func grpcUnix(sock string) error {
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	go s.Serve(ln)
	defer s.Stop()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %v", resp.Status)
	}
	return nil
}

// cpuHog spins four goroutines for wall and returns the CPU time the
// process got meanwhile: the cpu limit caps it.
func cpuHog(wall time.Duration) int64 {
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	stop := time.Now().Add(wall)
	done := make(chan struct{})
	for i := 0; i < 4; i++ {
		go func() {
			x := 0
			for time.Now().Before(stop) {
				x++
			}
			done <- struct{}{}
		}()
	}
	for i := 0; i < 4; i++ {
		<-done
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	ms := func(r syscall.Rusage) int64 {
		return (r.Utime.Sec+r.Stime.Sec)*1000 + int64(r.Utime.Usec+r.Stime.Usec)/1000
	}
	return ms(after) - ms(before)
}

func serveFD() {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	report("inherited-listener", err, "")
	if err != nil {
		return
	}
	fmt.Println(`{"name":"ready","ok":true}`)
	c, err := ln.Accept()
	report("accept", err, "")
	if err == nil {
		io.WriteString(c, "hello from the compartment\n")
		c.Close()
	}
	// Even its own listener is unreachable: lo is down.
	ln2, err := net.Listen("tcp", "127.0.0.1:18081")
	if err != nil {
		report("loopback", nil, "listen: "+err.Error())
		return
	}
	defer ln2.Close()
	report("loopback", dial("127.0.0.1:18081"), "")
}
