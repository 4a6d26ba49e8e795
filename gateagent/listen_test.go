package gateagent

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// An inherited gate listener (GateFD) serves peers of the compartment's uid
// and refuses others, as one the gate agent binds itself.
func TestListenGateInherited(t *testing.T) {
	for _, tt := range []struct {
		name  string
		uid   int
		admit bool
	}{
		{"own uid admitted", os.Getuid(), true},
		{"other uid refused", os.Getuid() + 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gate.sock")
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			ul := l.(*net.UnixListener)
			ul.SetUnlinkOnClose(false) // as the supervisor does
			f, err := ul.File()
			if err != nil {
				t.Fatal(err)
			}
			l.Close()
			// listenGate takes the descriptor over and closes it, as the gate
			// agent does with the one the supervisor hands it; give it a
			// duplicate, so f's own close (or its finalizer) does not close
			// a number by then reused elsewhere in this process.
			fd, err := unix.Dup(int(f.Fd()))
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			l2, err := listenGate(CompartmentConfig{Name: "c", UID: tt.uid, GateSocket: path, GateFD: fd})
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			accepted := make(chan bool, 1)
			go func() {
				c, err := l2.Accept()
				if err == nil {
					c.Close()
				}
				accepted <- err == nil
			}()
			c, err := net.Dial("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1)
			c.Read(buf) // returns once the gate accepted and closed, or refused
			c.Close()
			if tt.admit {
				if !<-accepted {
					t.Error("peer of the compartment's uid not admitted")
				}
			} else {
				l2.Close()
				if <-accepted {
					t.Error("peer of another uid admitted")
				}
			}
		})
	}
}
