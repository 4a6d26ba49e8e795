package landlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRulesEnvRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		rules   Rules
		wantErr error
	}{
		{"empty", Rules{}, nil},
		{"paths and ports", Rules{ReadOnly: []string{"/etc", "/bin/x"}, ReadWrite: []string{"/tmp"}, ConnectTCP: []uint16{443}, BindTCP: []uint16{8443}}, nil},
		{"relative path", Rules{ReadOnly: []string{"etc"}}, ErrBadRules},
		{"unclean path", Rules{ReadWrite: []string{"/tmp/../etc"}}, ErrBadRules},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := tt.rules.Env()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Env() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			val, ok := strings.CutPrefix(env, EnvName+"=")
			if !ok {
				t.Fatalf("Env() = %q, want prefix %s=", env, EnvName)
			}
			got, err := Parse(val)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			a, _ := json.Marshal(got)
			b, _ := json.Marshal(tt.rules)
			if string(a) != string(b) {
				t.Errorf("round trip = %s, want %s", a, b)
			}
		})
	}
}

func TestParseRejectsUnknownFields(t *testing.T) {
	if _, err := Parse(`{"ro":["/etc"],"everything":true}`); !errors.Is(err, ErrBadRules) {
		t.Fatalf("Parse unknown field: err = %v, want ErrBadRules", err)
	}
}

func TestRestrictSelfWithoutRulesFailsClosed(t *testing.T) {
	t.Setenv(EnvName, "")
	os.Unsetenv(EnvName)
	if err := RestrictSelf(); !errors.Is(err, ErrNoRules) {
		t.Fatalf("RestrictSelf without env: err = %v, want ErrNoRules", err)
	}
}

// childEnv marks the re-executed test binary that applies the rules and
// reports what it could still do: Landlock cannot be undone, so it must run
// in a process of its own.
const childEnv = "E2SGATE_LANDLOCK_TEST_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(child(dir))
	}
	os.Exit(m.Run())
}

// child restricts itself and prints one line per probe: "name ok" or
// "name denied".
func child(dir string) int {
	if err := RestrictSelf(); err != nil {
		fmt.Println("restrict", err)
		return 2
	}
	probe := func(name string, err error) {
		if err != nil {
			fmt.Println(name, "denied")
		} else {
			fmt.Println(name, "ok")
		}
	}
	_, err := os.ReadFile(filepath.Join(dir, "ro", "f"))
	probe("read-ro", err)
	probe("write-ro", os.WriteFile(filepath.Join(dir, "ro", "g"), []byte("x"), 0o600))
	probe("write-rw", os.WriteFile(filepath.Join(dir, "rw", "g"), []byte("x"), 0o600))
	_, err = os.ReadFile(filepath.Join(dir, "secret", "key"))
	probe("read-secret", err)
	_, err = os.ReadFile("/etc/hostname")
	probe("read-etc", err)
	// A spool moves files between two of its writable directories (the
	// refer right); moving one out into a read-only tree stays refused.
	probe("rename-rw-across-dirs", os.Rename(filepath.Join(dir, "rw", "a", "f"), filepath.Join(dir, "rw", "b", "f")))
	probe("rename-rw-into-ro", os.Rename(filepath.Join(dir, "rw", "b", "f"), filepath.Join(dir, "ro", "f2")))
	// Plain TCP: Landlock does not cover MPTCP (Go's default for
	// listeners), which is why the sandbox's seccomp profile refuses
	// IPPROTO_MPTCP sockets and Go falls back to TCP.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	probe("bind-any-port", err)
	if l != nil {
		l.Close()
	}
	return 0
}

func TestRestrictSelfEnforces(t *testing.T) {
	abi := ABI()
	if abi < MinABI {
		t.Skipf("kernel lacks Landlock (ABI %d)", abi)
	}
	dir := t.TempDir()
	for _, d := range []string{"ro", "rw", "rw/a", "rw/b", "secret"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"ro/f", "secret/key", "rw/a/f"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rules := Rules{ReadOnly: []string{filepath.Join(dir, "ro"), self, "/nonexistent"}, ReadWrite: []string{filepath.Join(dir, "rw")}}
	env, err := rules.Env()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := map[string]string{
		"read-ro": "ok", "write-ro": "denied", "write-rw": "ok",
		"read-secret": "denied", "read-etc": "denied",
		"rename-rw-into-ro": "denied",
	}
	if abi >= 2 {
		want["rename-rw-across-dirs"] = "ok"
	}
	if abi >= 4 {
		want["bind-any-port"] = "denied"
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		got[k] = v
	}
	for k, v := range want {
		t.Run(k, func(t *testing.T) {
			if got[k] != v {
				t.Errorf("%s = %q, want %q (child output:\n%s)", k, got[k], v, out)
			}
		})
	}
}
