// Command login is the login shell of the appliance's role accounts
// (secadmin, keyadmin, auditor, operator, contentmgr): it runs e2sctl and
// nothing else, so a role holder over SSH gets no shell.
//
//	ssh operator@appliance e2sctl status   # sshd runs: login -c "e2sctl status"
//
// The command is split on white space (no quoting, no globbing, no
// variables); its first word must be e2sctl.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// e2sctl is where the image installs it.
const e2sctl = "/usr/bin/e2sctl"

func main() {
	args, err := command(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2sgate:", err)
		os.Exit(2)
	}
	err = syscall.Exec(e2sctl, args, []string{"PATH=/usr/bin:/bin", "HOME=/", "LANG=C.UTF-8"})
	fmt.Fprintln(os.Stderr, "e2sgate: run e2sctl:", err)
	os.Exit(1)
}

// command turns the shell's arguments (-c "e2sctl ...") into e2sctl's argv.
func command(args []string) ([]string, error) {
	if len(args) != 2 || args[0] != "-c" {
		return nil, fmt.Errorf("this account runs e2sctl only: ssh ACCOUNT@APPLIANCE e2sctl COMMAND")
	}
	words := strings.Fields(args[1])
	if len(words) == 0 || words[0] != "e2sctl" {
		return nil, fmt.Errorf("only e2sctl may run here, not %q", args[1])
	}
	words[0] = e2sctl
	return words, nil
}
