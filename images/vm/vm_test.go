// Package vm tests the appliance's VM image (`make vm-test`): it boots
// bin/e2sgate.img headless under QEMU (KVM where /dev/kvm exists, software
// emulation otherwise) with OVMF in Secure Boot mode, user-mode networking
// forwarding two loopback ports only (web front and SSH), and checks the
// appliance from the host as a buyer and as the role accounts would; then
// updates it to a second, newer image (E2SGATE_VM_NEXT), first a tampered
// copy that must roll back, then the real one. Every QEMU it starts it kills
// by pid, on failure too.
//
// The image is the file E2SGATE_VM_IMAGE names (make vm-test and make test
// set it), else bin/e2sgate.img; without one the tests fail under make test
// and skip otherwise.
package vm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/testutil"
)

// EnvImage names the image under test, EnvNext a second build of it with a
// newer IMAGE_VERSION (the update).
// EnvFull=1 runs TestVM and TestRollback without KVM too.
const (
	EnvImage = "E2SGATE_VM_IMAGE"
	EnvNext  = "E2SGATE_VM_NEXT"
	EnvFull  = "E2SGATE_VM_FULL"
)

// OVMF from Debian's ovmf package, Secure Boot enforced, with Debian's
// snakeoil test key in PK, KEK and db (the key make image signs with when
// given no other): code read-only, a copy of the variables per VM.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.snakeoil.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
)

// secureBootOn is what the kernel's EFI stub prints when the firmware
// enforces Secure Boot.
const secureBootOn = "EFI stub: UEFI Secure Boot is enabled."

var roles = []string{"secadmin", "keyadmin", "auditor", "operator", "contentmgr"}

// Compartments every appliance runs (e2sctl status lists each).
var compartments = []string{"outside", "purchasing", "payment", "keyhandler", "inside"}

// vmImage is an image under test: the file env names (make test and make
// vm-test set it), else the one make image left in bin/. A missing image
// fails under make test and skips otherwise, like a missing tool.
func vmImage(t *testing.T, env, file string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join("..", "..", "bin", file)
	}
	return testutil.RequiresFile(t, p, "the VM image (make image-next builds it)")
}

// requireFullBoot skips the boots that wait for the appliance or for a
// failed update and its rollback where the kernel has no KVM: software
// emulation takes 15-30 min for them on this machine kind, past make
// test's budget. make vm-test runs them anyway (EnvFull).
func requireFullBoot(t *testing.T) {
	t.Helper()
	if !kvm() && os.Getenv(EnvFull) == "" {
		t.Skipf("this kernel has no KVM (/dev/kvm): the full boot, update and rollback take 15-30 min in software emulation, past make test's budget; make vm-test runs them (%s=1)", EnvFull)
	}
}

func TestVM(t *testing.T) {
	requireFullBoot(t)
	image, next := vmImage(t, EnvImage, "e2sgate.img"), vmImage(t, EnvNext, "e2sgate-next.img")
	for _, tool := range []string{"qemu-system-x86_64", "ssh", "ssh-keygen", "openssl", "mkfs.vfat", "mcopy", "mmd", "mdir", "cp", "sfdisk", "objcopy"} {
		testutil.Requires(t, tool)
	}
	testutil.RequiresFile(t, ovmfCode, "OVMF (Debian package ovmf)")
	v1, v2 := imageVersion(t, image), imageVersion(t, next)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	run(t, "cp", "--sparse=always", image, disk) // the built image stays pristine
	key := filepath.Join(dir, "id")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vm-test", "-f", key)
	seed := makeSeed(t, dir, key+".pub", "version: 1\nlisten: 0.0.0.0:8443\n")

	vm := boot(t, dir, "first", disk, seed, key, bootTimeout())
	t.Logf("boot to serving: %s (%s)", vm.serving.Round(100*time.Millisecond), vm.accel)

	t.Run("static page", func(t *testing.T) {
		code, body := vm.get(t, "/", "")
		if code != 200 || !bytes.Contains(bytes.ToLower(body), []byte("<html")) {
			t.Fatalf("GET / = %d %.200q", code, body)
		}
	})
	t.Run("catalogue", func(t *testing.T) {
		code, body := vm.get(t, "/cgi-bin/purchasing/catalogue", "")
		if code != 200 || !json.Valid(body) {
			t.Fatalf("catalogue = %d %.200q", code, body)
		}
	})
	t.Run("signed offer", func(t *testing.T) {
		code, offer := vm.get(t, "/cgi-bin/purchasing/offer", `{"items":[{"sku":"LIC-STD","qty":2}]}`)
		if code != 200 {
			t.Fatalf("offer = %d %.200q", code, offer)
		}
		code, cert := vm.get(t, "/cgi-bin/keyhandler/certificate", "")
		if code != 200 {
			t.Fatalf("certificate = %d %.200q", code, cert)
		}
		os.WriteFile(filepath.Join(dir, "offer.p7m"), offer, 0o644)
		os.WriteFile(filepath.Join(dir, "merchant.pem"), cert, 0o644)
		run(t, "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", filepath.Join(dir, "offer.p7m"),
			"-CAfile", filepath.Join(dir, "merchant.pem"), "-purpose", "any", "-out", os.DevNull)
	})
	t.Run("unregistered script", func(t *testing.T) {
		if code, body := vm.get(t, "/cgi-bin/purchasing/admin", ""); code != 404 {
			t.Fatalf("unregistered script = %d %.200q, want 404", code, body)
		}
	})
	var orderID string
	t.Run("order", func(t *testing.T) {
		code, body := vm.get(t, "/cgi-bin/purchasing/order", `{"items":[{"sku":"LIC-PRO","qty":1}]}`)
		var o struct {
			OrderID string `json:"order_id"`
		}
		if code != 201 || json.Unmarshal(body, &o) != nil || o.OrderID == "" {
			t.Fatalf("order = %d %.300q", code, body)
		}
		orderID = o.OrderID
	})
	t.Run("auditor audit verify", func(t *testing.T) {
		out, err := vm.ssh("auditor", key, "e2sctl audit verify")
		if err != nil {
			t.Fatalf("e2sctl audit verify as auditor: %v\n%s", err, out)
		}
		t.Logf("%s", out)
	})
	t.Run("operator status", func(t *testing.T) {
		out, err := vm.ssh("operator", key, "e2sctl status")
		if err != nil {
			t.Fatalf("e2sctl status as operator: %v\n%s", err, out)
		}
		for _, c := range compartments {
			if !strings.Contains(out, c) {
				t.Errorf("e2sctl status does not list %s", c)
			}
		}
		t.Logf("%s", out)
	})
	t.Run("role account has no shell", func(t *testing.T) {
		if out, err := vm.ssh("operator", key, "id"); err == nil {
			t.Fatalf("operator ran a command other than e2sctl: %s", out)
		}
	})
	t.Run("root login refused", func(t *testing.T) {
		out, err := vm.ssh("root", key, "e2sctl status")
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Fatalf("root over SSH: %v\n%s", err, out)
		}
	})
	t.Run("LSMs on", func(t *testing.T) {
		// lsm= on the kernel command line; firstboot reports what is active
		con := vm.console()
		i := strings.Index(con, "active LSMs: ")
		if i < 0 {
			t.Fatal("no LSM report on the console")
		}
		line, _, _ := strings.Cut(con[i:], "\n")
		for _, lsm := range []string{"landlock", "lockdown", "yama", "bpf"} {
			if !strings.Contains(line, lsm) {
				t.Errorf("%s is not active: %s", lsm, line)
			}
		}
		t.Log(line)
	})
	t.Run("root filesystem read-only", func(t *testing.T) {
		// firstboot tries to write / at every boot and reports on the console
		if !strings.Contains(vm.console(), "root filesystem is read-only") {
			t.Fatalf("no read-only root report on the console")
		}
	})
	t.Run("secure boot", func(t *testing.T) {
		vm.wantConsole(t, "image "+v1+", root on e2s-root-a", secureBootOn)
	})
	t.Run("idle memory", func(t *testing.T) {
		t.Logf("guest memory in use while serving, idle: %s", vm.memoryInUse(t))
	})
	vm.powerdown(t)

	// An update that does not come up: a copy of the next image with a byte
	// of its root flipped. systemd-boot tries it once (the kernel panics on
	// the first bad block and reboots), then boots the old image again from
	// its untouched slot; what was on /var is there.
	bad := filepath.Join(dir, "next-tampered.img")
	run(t, "cp", "--sparse=always", next, bad)
	flipByte(t, bad, partitionStart(t, bad, "e2s-root-a")+8)
	update(t, bad, disk)
	vm = boot(t, dir, "rollback", disk, seed, key, 2*bootTimeout()) // the failed boot, then the good one
	t.Logf("boot to serving after a failed update and the rollback: %s", vm.serving.Round(100*time.Millisecond))
	t.Run("rolled back", func(t *testing.T) {
		con := vm.console()
		if !strings.Contains(con, "Kernel panic") {
			t.Errorf("the tampered update did not fail (no kernel panic on the console)")
		}
		vm.wantConsole(t, "image "+v1+", root on e2s-root-a")
		if strings.Contains(con, "image "+v2) {
			t.Errorf("the tampered image %s came up", v2)
		}
	})
	t.Run("order survives rollback", func(t *testing.T) { vm.wantOrder(t, orderID) })
	vm.powerdown(t)
	if e := bootEntries(t, disk); !slices.Contains(e, "e2sgate-"+v2+"+0-1.efi") || !slices.Contains(e, "e2sgate-"+v1+".efi") {
		t.Errorf("boot entries after the rollback = %v, want %s marked bad (+0-1) and %s good", e, v2, v1)
	}

	// The real update: the next image into the slot not in use (b), booted,
	// marked good once it serves; e2s-var stays.
	update(t, next, disk)
	vm = boot(t, dir, "second", disk, seed, key, bootTimeout())
	t.Logf("boot to serving after the update to %s: %s", v2, vm.serving.Round(100*time.Millisecond))
	t.Run("runs the update", func(t *testing.T) {
		vm.wantConsole(t, "image "+v2+", root on e2s-root-b", secureBootOn)
	})
	t.Run("order survives update", func(t *testing.T) { vm.wantOrder(t, orderID) })
	t.Run("audit verifies after update", func(t *testing.T) {
		if out, err := vm.ssh("auditor", key, "e2sctl audit verify"); err != nil {
			t.Fatalf("e2sctl audit verify after the update: %v\n%s", err, out)
		}
	})
	vm.powerdown(t)
	if e, want := bootEntries(t, disk), sorted("e2sgate-"+v1+".efi", "e2sgate-"+v2+".efi"); !slices.Equal(e, want) {
		t.Errorf("boot entries after the update = %v, want %s marked good beside %s", e, v2, v1)
	}
}

// TestRollback updates a copy of the image twice, watching the console
// only (it does not wait for the appliance to serve, so it holds under
// software emulation too): first to a copy of the next image with a byte of
// its root flipped, which must panic on its one try and fall back to the
// old image in slot a; then to the next image itself, which must boot from
// slot b. TestVM does the same with the appliance serving in between.
func TestRollback(t *testing.T) {
	requireFullBoot(t)
	image, next := vmImage(t, EnvImage, "e2sgate.img"), vmImage(t, EnvNext, "e2sgate-next.img")
	for _, tool := range []string{"qemu-system-x86_64", "ssh-keygen", "mkfs.vfat", "mcopy", "mmd", "mdir", "cp", "sfdisk", "objcopy"} {
		testutil.Requires(t, tool)
	}
	testutil.RequiresFile(t, ovmfCode, "OVMF (Debian package ovmf)")
	v1, v2 := imageVersion(t, image), imageVersion(t, next)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	run(t, "cp", "--sparse=always", image, disk)
	key := filepath.Join(dir, "id")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vm-test", "-f", key)
	seed := makeSeed(t, dir, key+".pub", "version: 1\nlisten: 0.0.0.0:8443\n")

	bad := filepath.Join(dir, "next-tampered.img")
	run(t, "cp", "--sparse=always", next, bad)
	flipByte(t, bad, partitionStart(t, bad, "e2s-root-a")+8)
	update(t, bad, disk)
	q := start1(t, dir, "rollback", disk, seed, false)
	q.awaitConsole(t, "image "+v1+", root on e2s-root-a", 2*bootTimeout()) // the failed boot, then the good one
	con := q.console()
	if i, j := strings.Index(con, "Kernel panic"), strings.Index(con, "image "+v1); i < 0 || i > j {
		t.Errorf("no kernel panic of the tampered update before %s came back:\n%s", v1, tail(con, 3000))
	}
	if strings.Contains(con, "image "+v2) {
		t.Errorf("the tampered image %s came up", v2)
	}
	q.powerdown(t)
	if e, want := bootEntries(t, disk), sorted("e2sgate-"+v1+".efi", "e2sgate-"+v2+"+0-1.efi"); !slices.Equal(e, want) {
		t.Errorf("boot entries after the rollback = %v, want %s good and %s marked bad (+0-1)", e, v1, v2)
	}

	update(t, next, disk)
	q = start1(t, dir, "update", disk, seed, false)
	q.awaitConsole(t, "image "+v2+", root on e2s-root-b", bootTimeout())
	q.wantConsole(t, secureBootOn)
	q.powerdown(t)
	if e := bootEntries(t, disk); !slices.Contains(e, "e2sgate-"+v1+".efi") || len(e) != 2 {
		t.Errorf("boot entries after the update = %v, want %s and the tried %s", e, v1, v2)
	}
}

// awaitConsole waits until the console shows want; it fails when QEMU ends
// or within passes first.
func (q *qemu) awaitConsole(t *testing.T, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(q.console(), want) {
		select {
		case <-q.exited:
			t.Fatalf("QEMU (%s) ended before the console showed %q:\n%s", q.name, want, tail(q.console(), 3000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the %s console did not show %q in %s:\n%s", q.name, want, within, tail(q.console(), 3000))
		}
		time.Sleep(2 * time.Second)
	}
}

// TestUnseeded boots the image with a seed whose e2sgate.yaml e2sgated
// refuses: the appliance must not run, and the web front must say why
// (503, the reason id, the next step) rather than be unreachable.
func TestUnseeded(t *testing.T) {
	image := vmImage(t, EnvImage, "e2sgate.img")
	for _, tool := range []string{"qemu-system-x86_64", "ssh-keygen", "mkfs.vfat", "mcopy", "mmd", "cp"} {
		testutil.Requires(t, tool)
	}
	testutil.RequiresFile(t, ovmfCode, "OVMF (Debian package ovmf)")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	run(t, "cp", "--sparse=always", image, disk)
	key := filepath.Join(dir, "id")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vm-test", "-f", key)
	seed := makeSeed(t, dir, key+".pub", "version: 1\nlisten: 0.0.0.0:8443\nno_such_setting: true\n")
	q := start1(t, dir, "unseeded", disk, seed, false)
	began := time.Now()
	var code int
	var body []byte
	var reason string
	for {
		select {
		case <-q.exited:
			t.Fatalf("QEMU exited; console:\n%s", tail(q.console(), 4000))
		default:
		}
		if resp, err := q.client.Get(q.url("/cgi-bin/purchasing/catalogue")); err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			code, reason = resp.StatusCode, resp.Header.Get("X-E2S-Reason")
			break
		}
		if time.Since(began) > bootTimeout() {
			t.Fatalf("no web front %s after QEMU started; console:\n%s", bootTimeout(), tail(q.console(), 4000))
		}
		time.Sleep(time.Second)
	}
	fmt.Printf("vm-test: unseeded boot (%s): web front answers %d after %s\n", q.accel, code, time.Since(began).Round(100*time.Millisecond))
	var b struct{ Error, Message, Next string }
	if code != 503 || reason != "seed.config_refused" || json.Unmarshal(body, &b) != nil || b.Error != reason || b.Next == "" {
		t.Fatalf("web front with a refused seed = %d %q %.300q, want 503 seed.config_refused with the next step", code, reason, body)
	}
	t.Logf("503 %s: %s; next: %s", b.Error, b.Message, b.Next)
	q.wantConsole(t, "the seed's e2sgate.yaml is refused", "no_such_setting")
	q.powerdown(t)
}

// TestTamperedRoot flips a byte in the verity-protected root (its squashfs
// superblock) of a copy of the image and expects the boot to stop.
func TestTamperedRoot(t *testing.T) {
	image := vmImage(t, EnvImage, "e2sgate.img")
	testutil.Requires(t, "qemu-system-x86_64")
	testutil.Requires(t, "sfdisk")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	run(t, "cp", "--sparse=always", image, disk)
	// squashfs superblock: inode count, read at mount
	flipByte(t, disk, partitionStart(t, disk, "e2s-root-a")+8)

	q := start1(t, dir, "tampered", disk, "", true)
	select {
	case <-q.exited:
	case <-time.After(bootTimeout()):
		t.Fatalf("a tampered root still runs after %s; console:\n%s", bootTimeout(), tail(q.console(), 3000))
	}
	con := q.console()
	if strings.Contains(con, "e2sgate web front") || !strings.Contains(con, "Kernel panic") {
		t.Fatalf("tampered root: no refusal on the console:\n%s", tail(con, 3000))
	}
	t.Logf("tampered root refused:\n%s", tail(con, 800))
}

// TestTamperedKernelImage changes the root hash on the command line inside
// the signed kernel image on the ESP, as someone who can write the disk
// would to boot a root of their own: the firmware (Secure Boot, the image
// signed by make image) must refuse to run it, so no kernel starts.
func TestTamperedKernelImage(t *testing.T) {
	image := vmImage(t, EnvImage, "e2sgate.img")
	testutil.Requires(t, "qemu-system-x86_64")
	testutil.RequiresFile(t, ovmfCode, "OVMF (Debian package ovmf)")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	run(t, "cp", "--sparse=always", image, disk)
	// the kernel image is on the ESP, the disk's first 64 MiB partition
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	esp := partitionStart(t, disk, "esp")
	b := make([]byte, 64<<20)
	if _, err := f.ReadAt(b, esp); err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimSpace(readFile(t, image+".roothash"))
	i := bytes.Index(b, []byte("e2s.roothash="+hash))
	if i < 0 {
		t.Fatalf("no e2s.roothash=%s on the ESP of %s", hash, image)
	}
	i += len("e2s.roothash=")
	c := byte('0') // another hex digit: still a well-formed command line
	if b[i] == '0' {
		c = '1'
	}
	if _, err := f.WriteAt([]byte{c}, esp+int64(i)); err != nil {
		t.Fatal(err)
	}

	q := start1(t, dir, "tampered-uki", disk, "", true)
	deadline := time.Now().Add(bootTimeout() / 2)
	for !strings.Contains(q.console(), "Security Violation") && !strings.Contains(q.console(), "Access Denied") {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	con := q.console()
	if strings.Contains(con, "Linux version") || strings.Contains(con, "e2sgate web front") {
		t.Fatalf("a kernel image with a changed root hash was started:\n%s", tail(con, 3000))
	}
	if !strings.Contains(con, "Security Violation") && !strings.Contains(con, "Access Denied") {
		t.Fatalf("no refusal by the firmware on the console:\n%s", tail(con, 3000))
	}
	t.Logf("tampered kernel image refused:\n%s", tail(con, 600))
}

// qemu is one running VM.
type qemu struct {
	cmd          *exec.Cmd
	exited       chan struct{}
	dir          string
	name         string
	accel        string
	web, sshPort int // host loopback ports
	serving      time.Duration
	client       *http.Client
}

func bootTimeout() time.Duration {
	if kvm() {
		return 3 * time.Minute
	}
	return 12 * time.Minute // software emulation
}

func kvm() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// boot starts the VM and waits until it serves: the web front answers and
// the operator's e2sctl status shows every compartment running.
func boot(t *testing.T, dir, name, disk, seed, key string, within time.Duration) *qemu {
	t.Helper()
	q := start1(t, dir, name, disk, seed, false)
	began := time.Now()
	deadline := began.Add(within)
	front := time.Duration(0)
	for {
		select {
		case <-q.exited:
			t.Fatalf("QEMU (%s boot) exited before the web front served; console:\n%s", name, tail(q.console(), 4000))
		default:
		}
		req, _ := http.NewRequest("GET", q.url("/"), nil)
		if resp, err := q.client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && front == 0 {
				front = time.Since(began)
			}
		}
		if front != 0 && q.allRunning(key) {
			q.serving = time.Since(began)
			fmt.Printf("vm-test: %s boot (%s): web front answers after %s, every compartment running after %s\n",
				name, q.accel, front.Round(100*time.Millisecond), q.serving.Round(100*time.Millisecond))
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("web front not serving %s after QEMU started (%s boot); console:\n%s", within, name, tail(q.console(), 4000))
		}
		time.Sleep(time.Second)
	}
}

// allRunning asks e2sctl status, as operator, whether every compartment runs.
func (q *qemu) allRunning(key string) bool {
	out, err := q.ssh("operator", key, "e2sctl status")
	if err != nil {
		return false
	}
	var st struct {
		Compartments map[string]struct {
			State string `json:"state"`
		} `json:"compartments"`
	}
	if json.Unmarshal([]byte(out), &st) != nil {
		return false
	}
	for _, c := range compartments {
		if st.Compartments[c].State != "running" {
			return false
		}
	}
	return true
}

// start1 starts QEMU on disk (and the seed disk, if any). noReboot makes a
// kernel panic end QEMU.
func start1(t *testing.T, dir, name, disk, seed string, noReboot bool) *qemu {
	t.Helper()
	vars := filepath.Join(dir, name+"-vars.fd")
	run(t, "cp", ovmfVars, vars)
	q := &qemu{dir: dir, name: name, web: freePort(t), sshPort: freePort(t), exited: make(chan struct{})}
	q.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // self-signed web front, made at first start
	}}
	accel, cpu := "tcg", "max"
	if kvm() {
		accel, cpu = "kvm", "host"
	}
	q.accel = accel
	args := []string{
		"-name", "e2sgate-vm-test-" + name,
		// smm and a secure flash: the firmware's Secure Boot variables
		// cannot be changed from the guest
		"-machine", "q35,smm=on,accel=" + accel, "-cpu", cpu, "-smp", "2", "-m", "2048",
		"-global", "driver=cfi.pflash01,property=secure,value=on",
		"-display", "none", "-monitor", "none", "-nodefaults",
		"-serial", "file:" + filepath.Join(dir, name+"-console.log"),
		"-qmp", "unix:" + filepath.Join(dir, name+"-qmp.sock") + ",server=on,wait=off",
		"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmfCode,
		"-drive", "if=pflash,format=raw,file=" + vars,
		"-drive", "if=virtio,format=raw,file=" + disk,
		"-netdev", fmt.Sprintf("user,id=n0,hostfwd=tcp:127.0.0.1:%d-:8443,hostfwd=tcp:127.0.0.1:%d-:22", q.web, q.sshPort),
		"-device", "virtio-net-pci,netdev=n0",
		"-device", "virtio-rng-pci",
		"-device", "virtio-balloon-pci,id=balloon0", // memory statistics only; never inflated
	}
	if seed != "" {
		args = append(args, "-drive", "if=virtio,format=raw,readonly=on,file="+seed)
	}
	if noReboot {
		args = append(args, "-no-reboot")
	}
	q.cmd = exec.Command("qemu-system-x86_64", args...)
	q.cmd.Stdout, q.cmd.Stderr = os.Stderr, os.Stderr
	// QEMU dies with the test process, even when a timeout panics past the
	// cleanups below.
	q.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := q.cmd.Start(); err != nil {
		t.Fatalf("start QEMU: %v", err)
	}
	go func() { q.cmd.Wait(); close(q.exited) }()
	t.Cleanup(q.kill)
	return q
}

// kill ends QEMU by its pid, if it still runs.
func (q *qemu) kill() {
	select {
	case <-q.exited:
		return
	default:
	}
	q.cmd.Process.Kill()
	<-q.exited
}

// powerdown asks the guest to shut down (ACPI, over QMP) and waits for QEMU
// to exit; it asks again every 20 s (a guest still booting may miss the
// button) and kills QEMU when the guest does not stop in time.
func (q *qemu) powerdown(t *testing.T) {
	t.Helper()
	deadline := time.After(bootTimeout() / 2)
	for {
		q.qmp(`{"execute":"system_powerdown"}`)
		select {
		case <-q.exited:
			return
		case <-deadline:
			t.Errorf("guest did not power down; killing QEMU")
			q.kill()
			return
		case <-time.After(20 * time.Second):
		}
	}
}

func (q *qemu) url(path string) string { return fmt.Sprintf("https://127.0.0.1:%d%s", q.web, path) }

// get GETs path, or POSTs body as JSON when body is not empty.
func (q *qemu) get(t *testing.T, path, body string) (int, []byte) {
	t.Helper()
	method, rd := "GET", io.Reader(nil)
	if body != "" {
		method, rd = "POST", strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, q.url(path), rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := q.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// ssh runs command as user over the forwarded SSH port.
func (q *qemu) ssh(user, key, command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", "-i", key, "-p", fmt.Sprint(q.sshPort),
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR",
		user+"@127.0.0.1", command)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (q *qemu) console() string {
	b, _ := os.ReadFile(filepath.Join(q.dir, q.name+"-console.log"))
	return string(b)
}

// wantConsole fails unless the console shows every one of want.
func (q *qemu) wantConsole(t *testing.T, want ...string) {
	t.Helper()
	con := q.console()
	for _, w := range want {
		if !strings.Contains(con, w) {
			t.Errorf("the %s console does not show %q:\n%s", q.name, w, tail(con, 2000))
		}
	}
}

// wantOrder fails unless the order placed on the first boot is there.
func (q *qemu) wantOrder(t *testing.T, id string) {
	t.Helper()
	if id == "" {
		t.Fatal("no order was placed on the first boot")
	}
	if code, body := q.get(t, "/cgi-bin/purchasing/order/"+id, ""); code != 200 {
		t.Fatalf("order %s on the %s boot = %d %.200q", id, q.name, code, body)
	}
}

// memoryInUse is the guest's memory in use (total less available, as the
// guest kernel counts it), from the virtio balloon's statistics over QMP.
func (q *qemu) memoryInUse(t *testing.T) string {
	t.Helper()
	const dev = "/machine/peripheral/balloon0"
	if _, err := q.qmp(`{"execute":"qom-set","arguments":{"path":"` + dev + `","property":"guest-stats-polling-interval","value":2}}`); err != nil {
		t.Fatalf("QMP: %v", err)
	}
	for i := 0; i < 30; i++ {
		time.Sleep(2 * time.Second)
		out, err := q.qmp(`{"execute":"qom-get","arguments":{"path":"` + dev + `","property":"guest-stats"}}`)
		if err != nil {
			t.Fatalf("QMP: %v", err)
		}
		var r struct {
			Return struct {
				Stats      map[string]int64 `json:"stats"`
				LastUpdate int64            `json:"last-update"`
			} `json:"return"`
		}
		if json.Unmarshal([]byte(out), &r) != nil || r.Return.LastUpdate == 0 {
			continue
		}
		total, avail := r.Return.Stats["stat-total-memory"], r.Return.Stats["stat-available-memory"]
		if total > 0 && avail > 0 {
			return fmt.Sprintf("%d MiB of %d MiB (%d MiB free)", (total-avail)>>20, total>>20, r.Return.Stats["stat-free-memory"]>>20)
		}
	}
	t.Fatalf("the guest reported no memory statistics (virtio balloon)")
	return ""
}

// qmp sends one command on a new QMP connection and returns its answer.
func (q *qemu) qmp(command string) (string, error) {
	c, err := net.Dial("unix", filepath.Join(q.dir, q.name+"-qmp.sock"))
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	r.ReadString('\n') // greeting
	fmt.Fprintln(c, `{"execute":"qmp_capabilities"}`)
	r.ReadString('\n')
	fmt.Fprintln(c, command)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if !strings.Contains(line, `"event"`) {
			return line, nil
		}
	}
}

// update applies img to disk with update.sh.
func update(t *testing.T, img, disk string) {
	t.Helper()
	out, err := exec.Command("./update.sh", img, disk).CombinedOutput()
	if err != nil {
		t.Fatalf("update.sh %s: %v\n%s", img, err, out)
	}
	t.Logf("%s", out)
}

// bootEntries lists EFI/Linux on the disk's ESP, sorted.
func bootEntries(t *testing.T, disk string) []string {
	t.Helper()
	cmd := exec.Command("mdir", "-b", "-i", fmt.Sprintf("%s@@%d", disk, partitionStart(t, disk, "esp")), "::/EFI/Linux")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mdir of the ESP: %v", err)
	}
	var e []string
	for _, l := range strings.Fields(string(out)) {
		if n, ok := strings.CutPrefix(l, "::/EFI/Linux/"); ok {
			e = append(e, n)
		}
	}
	slices.Sort(e)
	return e
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// imageVersion is the IMAGE_VERSION build.sh wrote beside the image.
func imageVersion(t *testing.T, image string) string {
	t.Helper()
	v := strings.TrimSpace(readFile(t, image+".version"))
	if v == "" {
		t.Fatalf("%s.version is empty", image)
	}
	return v
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("%v (build the image with make image)", err)
	}
	return string(b)
}

// flipByte inverts the byte at off in file.
func flipByte(t *testing.T, file string, off int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// makeSeed writes the seed disk: a small vfat labelled E2SSEED with the
// config and the same test key for every role.
func makeSeed(t *testing.T, dir, pub, config string) string {
	t.Helper()
	seed := filepath.Join(dir, "seed.img")
	run(t, "mkfs.vfat", "-C", "-n", "E2SSEED", seed, "4096")
	cfg := filepath.Join(dir, "e2sgate.yaml")
	os.WriteFile(cfg, []byte(config), 0o644)
	run(t, "mcopy", "-i", seed, cfg, "::/e2sgate.yaml")
	run(t, "mmd", "-i", seed, "::/keys")
	for _, r := range roles {
		run(t, "mcopy", "-i", seed, pub, "::/keys/"+r+".pub")
	}
	return seed
}

// partitionStart is the byte offset of the partition named name.
func partitionStart(t *testing.T, disk, name string) int64 {
	t.Helper()
	out, err := exec.Command("sfdisk", "--json", disk).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var pt struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Name  string `json:"name"`
				Start int64  `json:"start"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &pt); err != nil {
		t.Fatal(err)
	}
	ss := pt.PartitionTable.SectorSize
	if ss == 0 {
		ss = 512
	}
	for _, p := range pt.PartitionTable.Partitions {
		if p.Name == name {
			return p.Start * ss
		}
	}
	t.Fatalf("no partition %s in %s", name, disk)
	return 0
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
