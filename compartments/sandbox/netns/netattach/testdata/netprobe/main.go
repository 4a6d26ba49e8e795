// Command netprobe plays a compromised compartment on the network: run in a
// real compartment sandbox with its orders in the environment
// (netnstest.Env), it applies its Landlock rules like every compartment
// program (unless E2S_NETPROBE_LANDLOCK=0, to show the layers below hold
// alone), tries each probe and prints one netnstest.Report.
package main

import (
	"fmt"
	"os"

	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
	"github.com/e2sgate/e2sgate/internal/testutil/netnstest"
)

func main() {
	if os.Getenv("E2S_NETPROBE_LANDLOCK") != "0" {
		if err := landlock.RestrictSelf(); err != nil {
			fmt.Fprintln(os.Stderr, "netprobe: landlock:", err)
			os.Exit(1)
		}
	}
	netnstest.Main()
	fmt.Fprintln(os.Stderr, "netprobe: no probes in the environment")
	os.Exit(2)
}
