package sandbox

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/images"
)

// TestRealCompartmentServesUnderConfinement runs a real compartment program
// (./cmd/purchasing: go-plugin, gRPC, Landlock) in the runc sandbox with the
// Spec shape the supervisor uses, reads go-plugin's handshake line through
// the passed-through stdout, and calls the plugin's gRPC health service on
// the unix socket it made in its (bind-mounted, same-path) plugin directory.
// It proves the seccomp allowlist and the Landlock rules leave a real
// compartment working.
func TestRealCompartmentServesUnderConfinement(t *testing.T) {
	r := newTestRunc(t)
	bin := filepath.Join(testTop, "purchasing")
	if err := images.CompileStatic(context.Background(), "../../cmd/purchasing", bin); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	dirs := map[string]string{}
	for _, d := range []string{"plugin", "gate", "data"} {
		dirs[d] = filepath.Join(base, d)
		if err := os.Mkdir(dirs[d], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	chownTree(t, base, probeUID)
	pr, pw := io.Pipe()
	s := Spec{
		Name: "purchasing", Label: "confidential:purchasing", Binary: bin,
		UID: probeUID, GID: probeUID,
		Env: []string{
			protocol.Handshake.MagicCookieKey + "=" + protocol.Handshake.MagicCookieValue,
			"PLUGIN_UNIX_SOCKET_DIR=" + dirs["plugin"],
			"PLUGIN_PROTOCOL_VERSIONS=1",
			"E2SGATE_NAME=purchasing",
			"E2SGATE_GATE_SOCKET=" + filepath.Join(dirs["gate"], "gate.sock"),
			"E2SGATE_DATA_DIR=" + dirs["data"],
			"E2SGATE_CONFIG={}",
			"TMPDIR=" + dirs["data"],
		},
		Mounts: []Mount{
			{Source: dirs["plugin"], Writable: true},
			{Source: dirs["gate"]},
			{Source: dirs["data"], Writable: true},
		},
		Network: Network{Mode: NetLoopback},
		Stdout:  pw,
		Stderr:  testWriter{t},
	}
	p, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	go func() { p.Wait(); pw.Close() }()

	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, pr)
	}()
	var hs string
	select {
	case hs = <-line:
	case <-time.After(30 * time.Second):
		t.Fatal("no handshake line in 30s")
	}
	parts := strings.Split(hs, "|")
	if len(parts) < 5 || parts[2] != "unix" || parts[4] != "grpc" {
		t.Fatalf("handshake line %q", hs)
	}
	sock := parts[3]
	if filepath.Dir(sock) != dirs["plugin"] {
		t.Errorf("plugin socket %s is not in the plugin directory %s", sock, dirs["plugin"])
	}
	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "plugin"})
	if err != nil {
		t.Fatalf("health check through the sandbox boundary: %v", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("plugin health = %v", resp.Status)
	}
}
