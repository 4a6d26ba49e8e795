package gateagent

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// listen serves a unix socket at p (accepting and dropping connections)
// until the test ends.
func listen(t *testing.T, p string) {
	t.Helper()
	l, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func TestCheckPluginAddr(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "plugin", "outside")
	other := filepath.Join(root, "plugin", "keyhandler")
	for _, d := range []string{dir, other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	listen(t, filepath.Join(dir, "plugin1"))
	listen(t, filepath.Join(other, "plugin2"))
	if err := os.Symlink(filepath.Join(other, "plugin2"), filepath.Join(dir, "swapped")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		addr string
		ok   bool
	}{
		{"socket in its directory", filepath.Join(dir, "plugin1"), true},
		{"symlink to another compartment's socket", filepath.Join(dir, "swapped"), false},
		{"another compartment's directory", filepath.Join(other, "plugin2"), false},
		{"dot-dot out of the directory", dir + "/../keyhandler/plugin2", false},
		{"relative", "plugin1", false},
		{"not a socket", filepath.Join(dir, "file"), false},
		{"missing", filepath.Join(dir, "nothing"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPluginAddr(dir, tt.addr)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrPluginAddr)) {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestDialPlugin(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "plugin1")
	listen(t, sock)
	if err := os.Symlink(sock, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		addr string
		uid  int
		want error
	}{
		{"the compartment's uid", sock, os.Getuid(), nil},
		{"another uid listens", sock, os.Getuid() + 1, ErrPluginPeer},
		{"a symlink is not followed", filepath.Join(dir, "link"), os.Getuid(), ErrPluginAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dialPlugin(context.Background(), tt.addr, tt.uid)
			if c != nil {
				c.Close()
			}
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// A compartment that swaps its plugin socket for a symlink to another
// compartment's socket is refused on re-attach, and the refusal is audited.
func TestAttachRefusesSwappedSymlinkAndAudits(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "plugin", "outside")
	other := filepath.Join(root, "plugin", "keyhandler")
	for _, d := range []string{dir, other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	listen(t, filepath.Join(other, "plugin2"))
	addr := filepath.Join(dir, "plugin1")
	if err := os.Symlink(filepath.Join(other, "plugin2"), addr); err != nil {
		t.Fatal(err)
	}
	a, audit, _ := newTestAgent(t)
	cfg := CompartmentConfig{Name: "outside", UID: os.Getuid(), PluginDir: dir}
	pc, comp, err := a.attach(context.Background(), Attachment{Name: "outside", Addr: addr, Pid: os.Getpid()}, cfg)
	if err == nil || pc != nil || comp != nil || !errors.Is(err, ErrPluginAddr) {
		t.Fatalf("attached: %v", err)
	}
	r := audit.last()
	if r.Caller != "outside" || r.Script != "gate/attach" || r.Decision != "deny" || r.Reason != "gate.plugin_refused" {
		t.Fatalf("audit %+v", r)
	}
}
