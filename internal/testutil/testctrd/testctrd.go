// Package testctrd starts a containerd daemon of a test's own (own root,
// state and sockets) and stops it when the test ends. Test code only.
package testctrd

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/e2sgate/e2sgate/internal/testutil"
)

// Start runs containerd with its state under a new directory in top and
// returns its gRPC socket.
func Start(t testing.TB, top string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("containerd tests run as root (they do in CI)")
	}
	bin := testutil.Requires(t, "containerd")
	// containerd 1.6 puts shim sockets under /run/containerd whatever its
	// config says: remove those directories after, if they were not there.
	var created []string
	for _, d := range []string{"/run/containerd", "/run/containerd/s", "/run/containerd/runc"} {
		if _, err := os.Stat(d); err != nil {
			created = append([]string{d}, created...)
		}
	}
	t.Cleanup(func() {
		for _, d := range created {
			syscall.Rmdir(d)
		}
	})
	dir, err := os.MkdirTemp(top, "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "c.sock")
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = %[5]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "debug.sock"), filepath.Join(dir, "opt"))
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever the test ran must be gone by now (its own cleanups ran
		// first): no container, task or shim may outlive it.
		for _, l := range leftovers(sock) {
			t.Errorf("containerd leftover: %s", l)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("containerd log:\n%s", tail(string(b), 4000))
		}
		os.RemoveAll(dir) // containerd mounts nothing for rootfs-path containers
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("containerd did not come up:\n%s", tail(string(b), 4000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leftovers lists (and then removes) the containers and tasks the daemon at
// sock still has, and the shims of that daemon still running.
func leftovers(sock string) []string {
	var found []string
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if c, err := containerd.New(sock, containerd.WithTimeout(5*time.Second)); err != nil {
		found = append(found, fmt.Sprintf("cannot ask the daemon: %v", err))
	} else {
		defer c.Close()
		nss, err := c.NamespaceService().List(ctx)
		if err != nil {
			found = append(found, fmt.Sprintf("namespaces: %v", err))
		}
		for _, ns := range nss {
			ctx := namespaces.WithNamespace(ctx, ns)
			ctrs, err := c.Containers(ctx)
			if err != nil {
				found = append(found, fmt.Sprintf("containers in %s: %v", ns, err))
			}
			for _, ctr := range ctrs {
				found = append(found, "container "+ns+"/"+ctr.ID())
				if task, err := ctr.Task(ctx, nil); err == nil {
					found = append(found, fmt.Sprintf("task %s/%s (pid %d)", ns, ctr.ID(), task.Pid()))
					// The program is its pid namespace's init: killing it
					// ends the container, whatever state the shim is in.
					if pid := int(task.Pid()); pid > 0 {
						syscall.Kill(pid, syscall.SIGKILL)
					}
					dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					task.Delete(dctx, containerd.WithProcessKill)
					cancel()
				}
				dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				ctr.Delete(dctx)
				cancel()
			}
		}
	}
	// Shims run "containerd-shim-runc-v2 -namespace N -id ID -address SOCK".
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte("containerd-shim")) || !bytes.Contains(b, append([]byte(sock), 0)) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		found = append(found, fmt.Sprintf("shim pid %d: %s", pid, bytes.ReplaceAll(bytes.TrimRight(b, "\x00"), []byte{0}, []byte{' '})))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	return found
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
