package keystore_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/e2sgate/e2sgate/internal/testutil"
)

// SoftHSM2 token used by the PKCS#11 tests. TestMain makes a private token
// directory and config before the library is loaded, because SoftHSM reads
// SOFTHSM2_CONF once per process.
const (
	softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"
	tokenLabel    = "e2sgate-test"
	tokenPIN      = "1234"
	// A second token that no test logs into with the right PIN, for the
	// wrong-PIN test (a token already logged in skips the PIN check).
	lockedToken = "e2sgate-locked"
)

// softhsmMissing is set when the SoftHSM2 library file is absent; the
// PKCS#11 tests then skip and say so. Any other setup failure fails.
var softhsmMissing bool

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if _, err := os.Stat(softhsmModule); err != nil {
		softhsmMissing = true
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "softhsm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tokens := filepath.Join(dir, "tokens")
	conf := filepath.Join(dir, "softhsm2.conf")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	for _, label := range []string{tokenLabel, lockedToken} {
		out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label,
			"--pin", tokenPIN, "--so-pin", "5678").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "softhsm2-util --init-token: %v\n%s", err, out)
			return 1
		}
	}
	return m.Run()
}

func requireSoftHSM(t testing.TB) {
	t.Helper()
	if softhsmMissing {
		testutil.Missing(t, "the SoftHSM2 library "+softhsmModule+" (Debian package softhsm2) is not installed, so the PKCS#11 backend is not tested")
	}
}
