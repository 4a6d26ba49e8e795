package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// NetAttacher builds what a compartment's network namespace holds beyond
// loopback — the veth into the internal network, the default-drop nftables
// ruleset in the namespace — and attaches the cgroup connect/sock_create
// programs to the compartment's cgroup v2 directory. compartments/sandbox/netns and
// compartments/sandbox/bpfguard implement it; the supervisor sets Runc.Net.
//
// Attach runs after the runtime created the (empty, lo up when the mode is
// not NetNone) namespace at NetnsPath and the cgroup v2 directory, and
// before the compartment's program starts, so the program never runs
// without its network layers. Detach undoes it; it is called from
// Process.Close and before every Start (to clear what a crashed supervisor
// left), so it must succeed when nothing or only part is attached.
type NetAttacher interface {
	Attach(ctx context.Context, a NetAttachment) error
	Detach(a NetAttachment) error
}

// NetAttachment is what a NetAttacher works on.
type NetAttachment struct {
	Spec      Spec
	NetnsPath string // bind-mounted network namespace (a file)
	CgroupV2  string // the compartment's cgroup v2 directory
}

// newNetns creates a network namespace and bind-mounts it at path. For
// loopback it brings lo up; otherwise the namespace has lo down and no
// other interface. The runtime owns the namespace (created in the initial
// user namespace), so the compartment, even as root of its own user
// namespace, cannot reconfigure it.
func newNetns(path string, loopback bool) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("netns file: %w", err)
	}
	f.Close()
	err = inNewNetns(func() error {
		if loopback {
			if err := linkUp("lo"); err != nil {
				return err
			}
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind netns: %w", err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// removeNetns unmounts and removes a namespace made by newNetns.
func removeNetns(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// linkUp sets IFF_UP on an interface of the calling thread's namespace.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}
