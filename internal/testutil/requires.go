// Package testutil holds what tests share about their surroundings. Test
// code only: no production program links it (the link tests check).
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// EnvStrict is set by `make test` and CI: there, every tool a test needs has
// been installed, so a missing one is a failure, never a silent skip.
const EnvStrict = "E2SGATE_TEST_STRICT"

// Strict reports whether missing tools fail tests (under `make test` and
// CI) rather than skip them (a plain `go test` on a machine without them).
func Strict() bool { return os.Getenv(EnvStrict) != "" || os.Getenv("CI") != "" }

// Requires returns the path of the program tool on PATH. When it is missing
// the test fails under `make test` and CI, and otherwise is skipped with a
// reason that says what to install.
func Requires(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		Missing(t, tool+" is not installed")
	}
	return p
}

// RequiresFile is Requires for a file that is not a program on PATH (a
// PKCS#11 module, say); what names it in the message.
func RequiresFile(t testing.TB, path, what string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, what+" ("+path+") is not installed")
	}
	return path
}

// Missing ends the test for a missing tool: a failure under `make test`
// and CI, a skip otherwise. why says what is missing.
func Missing(t testing.TB, why string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s; `make deps` installs it (missing tools fail under make test and CI)", why)
	}
	t.Skipf("%s; skipped outside make test (`make deps` installs it)", why)
}
