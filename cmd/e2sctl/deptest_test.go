package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The operators' client links the wire protocol and the offline verifier,
// never the server side: no policy engine, supervisor or gate agent.
func TestLinksNoServerCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	must := map[string]bool{"github.com/e2sgate/e2sgate/internal/daemon/admin/api": false, "github.com/e2sgate/e2sgate/internal/auditlog": false}
	for _, d := range deps {
		if _, ok := must[d]; ok {
			must[d] = true
		}
		for _, bad := range []string{"github.com/open-policy-agent/", "github.com/e2sgate/e2sgate/internal/daemon/supervisor", "github.com/e2sgate/e2sgate/gateagent"} {
			if strings.HasPrefix(d, bad) {
				t.Errorf("e2sctl links %s", d)
			}
		}
		if d == "github.com/e2sgate/e2sgate/internal/daemon/admin" {
			t.Errorf("e2sctl links the admin server")
		}
	}
	for d, ok := range must {
		if !ok {
			t.Errorf("e2sctl does not link %s; the dependency list is wrong", d)
		}
	}
}
