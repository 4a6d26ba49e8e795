// Command redprobe plays a compromised compartment (or gate agent) for the
// e2e red-team suite. The test runs it with `runc exec` in the running
// compartment's container (its namespaces, cgroup and BPF programs,
// seccomp filter, uid and groups); the probe first applies the
// compartment's Landlock rules (E2SGATE_LANDLOCK, as the compartment
// program does), then tries every attack of internal/testutil/redteam and
// prints one JSON object: what it is (/proc/self/status) and the results.
//
// Usage: redprobe PLAN_JSON
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
	"github.com/e2sgate/e2sgate/internal/testutil/redteam"
)

func main() {
	var plan redteam.Plan
	if len(os.Args) != 2 || json.Unmarshal([]byte(os.Args[1]), &plan) != nil {
		fmt.Fprintln(os.Stderr, "usage: redprobe PLAN_JSON")
		os.Exit(2)
	}
	out := struct {
		Status   map[string]string `json:"status"`
		Landlock string            `json:"landlock"`
		Results  []redteam.Result  `json:"results"`
	}{Status: map[string]string{}}
	// What it is, before Landlock closes /proc.
	status, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(status), "\n") {
		for _, k := range []string{"Uid", "Gid", "CapEff", "CapPrm", "NoNewPrivs", "Seccomp"} {
			if strings.HasPrefix(l, k+":") {
				out.Status[k] = strings.Join(strings.Fields(strings.TrimPrefix(l, k+":")), " ")
			}
		}
	}
	out.Landlock = "applied"
	if err := landlock.RestrictSelf(); err != nil {
		out.Landlock = err.Error()
	} else {
		out.Results = redteam.Run(plan)
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
