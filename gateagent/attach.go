package gateagent

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The plugin address comes from the compartment's own handshake, and the
// compartment can write its plugin directory: the gate agent trusts
// neither. The address must name a socket directly in the compartment's
// plugin directory, not a symlink, and the process listening on it must
// run as the compartment's uid. Otherwise a compartment could point the gate
// at another compartment's socket, or any unix socket on the host.

// checkPluginAddr refuses an address that is not a socket (a symlink is
// not) directly in dir.
func checkPluginAddr(dir, addr string) error {
	if dir == "" || !filepath.IsAbs(addr) || filepath.Clean(addr) != addr || filepath.Dir(addr) != filepath.Clean(dir) {
		return fmt.Errorf("%w: %q is not in the plugin directory %s", ErrPluginAddr, addr, dir)
	}
	for _, p := range []struct {
		path string
		want fs.FileMode
	}{{dir, fs.ModeDir}, {addr, fs.ModeSocket}} {
		fi, err := os.Lstat(p.path)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPluginAddr, err)
		}
		if fi.Mode().Type() != p.want {
			return fmt.Errorf("%w: %s is a %s, not a %s", ErrPluginAddr, p.path, typeName(fi.Mode().Type()), typeName(p.want))
		}
	}
	return nil
}

func typeName(m fs.FileMode) string {
	switch m {
	case fs.ModeDir:
		return "directory"
	case fs.ModeSocket:
		return "socket"
	case fs.ModeSymlink:
		return "symlink"
	case 0:
		return "file"
	}
	return m.String()
}

// dialPlugin connects to the socket at addr without following a symlink
// (the socket is opened O_PATH|O_NOFOLLOW and connected through its file
// descriptor, so a swap after the check changes nothing) and refuses a
// listener that does not run as uid.
func dialPlugin(ctx context.Context, addr string, uid int) (net.Conn, error) {
	fd, err := unix.Open(addr, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: open %s: %w", ErrPluginAddr, addr, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("%w: stat %s: %w", ErrPluginAddr, addr, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("%w: %s is not a socket", ErrPluginAddr, addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(fd))
	if err != nil {
		return nil, fmt.Errorf("dial plugin %s: %w", addr, err)
	}
	cred, err := peerCred(c.(*net.UnixConn))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrPluginPeer, addr, err)
	}
	if int(cred.Uid) != uid {
		c.Close()
		return nil, fmt.Errorf("%w: %s is served by uid %d, not the compartment's uid %d", ErrPluginPeer, addr, cred.Uid, uid)
	}
	return c, nil
}
