package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// attach gives the simulator a network namespace of its own on the
// appliance's internal network — a veth onto the internal namespace's
// bridge, the -listen address on it — and runs this program again inside
// it. It uses ip(8), like an operator would, and touches nothing in the
// root namespace.
func attach(ctx context.Context, ns, internal, bridge, listen string, args []string) error {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", listen, err)
	}
	link := "va-" + ns
	if len(link) > 15 {
		link = link[:15]
	}
	exec.Command("ip", "netns", "del", ns).Run() // a leftover of an earlier run
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", internal, "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", internal, "link", "set", link, "master", bridge, "up"},
		{"-n", ns, "addr", "add", netip.PrefixFrom(ap.Addr(), 24).String(), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			exec.Command("ip", "netns", "del", ns).Run()
			return fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// ip execs the program: a signal to cmd reaches the simulator itself.
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, self}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}

// withoutFlag drops "-name value" / "-name=value" from args.
func withoutFlag(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if a == name {
			i++
			continue
		}
		if strings.HasPrefix(a, name+"=") {
			continue
		}
		out = append(out, args[i])
	}
	return out
}
