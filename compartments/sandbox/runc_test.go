package sandbox

import (
	"testing"
	"time"
)

// TestRuncLegitimatePaths: what a real compartment does still works under
// full confinement.
func TestRuncLegitimatePaths(t *testing.T) {
	r := newTestRunc(t)
	rw := t.TempDir()
	s := probeSpec(t, "purchasing", probeUID, "legit", "-rw", rw, "-port", "18080")
	s.Mounts = []Mount{{Source: rw, Writable: true}}
	s.Landlock.BindTCP = []uint16{18080}
	s.Landlock.ConnectTCP = []uint16{18080}
	chownTree(t, rw, probeUID)
	res := runProbe(t, r, s, 60*time.Second)
	for _, name := range []string{"landlock", "ca-roots", "read-ca-file", "write-tmp", "write-rw-mount", "http-loopback", "grpc-unix", "hostname"} {
		t.Run(name, func(t *testing.T) {
			got, ok := res[name]
			if !ok {
				t.Fatalf("no result for %s", name)
			}
			if !got.OK {
				t.Errorf("%s failed under confinement: %s", name, got.Err)
			}
		})
	}
}
