// Package supervisor is e2sgated's one job: build each compartment's
// sandbox and the gate agent's (gate.go), start them, tell the gate agent
// where each compartment's plugin listens, restart what dies (with back-off,
// giving up on a compartment that keeps crashing) and stop everything on
// shutdown. It knows nothing about commerce.
//
//	supervisor                 gate agent                 compartment
//	    | bind web listener, gate/<c>/gate.sock               |
//	    |-- runtime.Start(gate) -->| (own uid and sandbox)     |
//	    |-- config, listener fds ->| serve gate/<c>/gate.sock  |
//	    |-- runtime.Start(spec) ---------------------------->  | plugin.Serve
//	    |<------------------- handshake line on stdout ------- |
//	    |-- attach {c, addr, pid} ->| go-plugin reattach ------>|
//	    |                          |<--- Gate.Forward (calls) --|
//	    | (c dies) detach, back-off, start again ...            |
package supervisor

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/compartments/sandbox"
	"github.com/e2sgate/e2sgate/gateagent"
	"github.com/e2sgate/e2sgate/internal/daemon/config"
	"github.com/e2sgate/e2sgate/internal/durable"
	"github.com/e2sgate/e2sgate/outside/site"
)

var (
	// ErrHandshake: a compartment did not announce its plugin socket.
	ErrHandshake = errors.New("compartment handshake failed")
	// ErrGateFailed: the gate agent keeps dying; the appliance stops.
	ErrGateFailed = errors.New("gate agent cannot stay up")
)

// State of a compartment as the supervisor reports it.
type State string

const (
	Starting State = "starting"
	Running  State = "running"
	Backoff  State = "backoff"
	Failed   State = "failed" // crashed too often; not restarted
	Stopped  State = "stopped"
)

// CompartmentStatus is one line of the status report.
type CompartmentStatus struct {
	State    State    `json:"state"`
	Pid      int      `json:"pid,omitempty"`
	Restarts int      `json:"restarts"`
	Label    string   `json:"label"`
	Runtime  string   `json:"runtime"`
	Layers   []string `json:"layers"`
	Since    string   `json:"since"`
}

// Status is what the supervisor writes to <run_dir>/status.json.
type Status struct {
	URL         string `json:"url"`
	Confinement string `json:"confinement"`
	Runc        string `json:"runc,omitempty"` // version of the pinned runc the sandboxes run
	GatePid     int    `json:"gate_pid"`
	// Gate is the gate agent's sandbox, reported like a compartment's.
	Gate         *CompartmentStatus            `json:"gate,omitempty"`
	Compartments map[string]*CompartmentStatus `json:"compartments"`
	// WebCert is a world-readable copy of the web front's certificate for
	// buyers to pin (curl --cacert, e2s buy -cacert), WebCertSHA256 its
	// fingerprint to give them out of band.
	WebCert       string `json:"web_cert,omitempty"`
	WebCertSHA256 string `json:"web_cert_sha256,omitempty"`
}

// Supervisor runs the appliance described by one config.
type Supervisor struct {
	cfg    *config.Config
	log    *slog.Logger
	rt     sandbox.Runtime
	self   string // e2sgated, re-run as "e2sgated gate" for the gate agent
	binDir string
	static string
	ids    map[string][2]int
	gateID [2]int // uid, gid of the gate agent
	// gateListeners are the compartments' gate sockets, bound by the
	// supervisor and handed to each gate agent it starts (gate.go).
	gateListeners []*os.File
	web           *os.File
	webAddr       net.Addr

	mu       sync.Mutex
	gateIn   io.Writer // control pipe of the running gate agent, or nil
	attached map[string]gateagent.Attachment
	held     map[string]chan struct{} // compartments an operator stopped (admin.go)
	pending  []gateagent.Event        // to audit once a gate agent runs (at most maxPending)
	overflow map[string]int           // events not queued for want of room, by compartment
	now      func() time.Time         // the clock of the event rate limits; time.Now if nil
	socks    map[string][]*os.File    // SOCKS listeners by the compartment they are handed to (socks.go)
	simulate bool                     // run the acquirer and back-office simulators (simulators.go)
	status   Status
}

// New prepares a supervisor; Run starts it.
func New(cfg *config.Config, log *slog.Logger, rt sandbox.Runtime) (*Supervisor, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	bin := cfg.BinDir
	if bin == "" {
		bin = filepath.Dir(self)
	}
	s := &Supervisor{cfg: cfg, log: log, rt: rt, self: self, binDir: bin,
		ids: map[string][2]int{}, attached: map[string]gateagent.Attachment{},
		gateID: [2]int{cfg.Gate.UID, cfg.Gate.GID},
		status: Status{Confinement: cfg.Confinement, Compartments: map[string]*CompartmentStatus{},
			Gate: &CompartmentStatus{State: Stopped, Label: gateName, Runtime: rt.Name()}}}
	if os.Geteuid() != 0 {
		s.gateID = [2]int{os.Getuid(), os.Getgid()}
	}
	for _, n := range manifest.Names() {
		c := cfg.Compartments[n]
		id := [2]int{c.UID, c.GID}
		if os.Geteuid() != 0 {
			id = [2]int{os.Getuid(), os.Getgid()} // unprivileged dev run: one uid for all
		}
		s.ids[n] = id
		s.status.Compartments[n] = &CompartmentStatus{State: Stopped, Label: c.Label, Runtime: rt.Name()}
		if _, err := os.Stat(filepath.Join(bin, n)); err != nil {
			return nil, fmt.Errorf("compartment program %s: %w; build it with `make build` or set bin_dir", n, err)
		}
	}
	if v, ok := rt.(interface{ Version() string }); ok {
		s.status.Runc = v.Version()
	}
	if os.Geteuid() != 0 {
		log.Warn("not running as root: every compartment runs under your own uid")
	}
	return s, nil
}

// Run prepares directories, binds the web listener, starts the gate agent
// and every compartment, and supervises them until ctx ends; then it stops
// them all.
func (s *Supervisor) Run(ctx context.Context) error {
	// A gate agent that cannot stay up stops the appliance (everything
	// below derives from this context): without it no call is decided or
	// audited.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if err := s.prepare(); err != nil {
		return err
	}
	defer s.closeGateListeners()
	if err := s.prepareGate(); err != nil {
		return err
	}
	stopAdmin, err := s.startAdmin(ctx)
	if err != nil {
		return err
	}
	defer stopAdmin()
	s.prepareSimulators()
	if err := s.prepareSocks(); err != nil {
		return err
	}
	defer s.closeSocks()
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("bind web front %s: %w", s.cfg.Listen, err)
	}
	s.webAddr = l.Addr()
	s.web, err = l.(*net.TCPListener).File()
	l.Close() // the duplicate in s.web stays open for the outside compartment
	if err != nil {
		return fmt.Errorf("web listener: %w", err)
	}
	defer s.web.Close()
	s.status.URL = "https://" + s.webAddr.String() + "/"

	if s.cfg.Confinement == "lowered" {
		s.log.Warn("CONFINEMENT LOWERED: compartments may run without every kernel confinement layer", "runtime", s.rt.Name())
		s.audit(gateagent.Event{Compartment: "supervisor", Kind: "supervisor/confinement", Decision: "lowered",
			Reason: "sup.confinement_lowered", Detail: "runtime " + s.rt.Name()})
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.superviseGate(ctx, stop) }()
	for _, n := range manifest.Names() {
		wg.Add(1)
		go func() { defer wg.Done(); s.supervise(ctx, n) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.runSimulators(ctx) }()
	s.writeStatus()
	wg.Add(1)
	go func() { defer wg.Done(); s.announce(ctx) }()
	<-ctx.Done()
	s.log.Info("shutting down")
	wg.Wait()
	s.writeStatus()
	s.log.Info("stopped")
	if err := context.Cause(ctx); errors.Is(err, ErrGateFailed) {
		return err
	}
	return nil
}

// announce says the appliance is up, with its URL, once the gate agent has
// attached every compartment, so what it prints can be used at once.
func (s *Supervisor) announce(ctx context.Context) {
	for !s.allRunning() {
		if !sleep(ctx, 50*time.Millisecond) {
			return
		}
	}
	s.publishWebCert()
	if err := s.publishMerchantCert(); err != nil {
		s.log.Warn("merchant certificate not published", "error", err)
	}
	s.log.Info("e2sgate is up", "url", s.status.URL, "status", filepath.Join(s.cfg.RunDir, "status.json"),
		"web_cert", s.status.WebCert, "web_cert_sha256", s.status.WebCertSHA256)
	fmt.Fprintf(os.Stdout, "e2sgate web front: %s\n", s.status.URL)
	if s.status.WebCert != "" {
		fmt.Fprintf(os.Stdout, "its certificate: %s (SHA-256 %s)\n", s.status.WebCert, s.status.WebCertSHA256)
	}
}

// publishWebCert copies the web front's certificate (configured, or the
// self-signed one outside made in its data directory, readable by root
// only) to <run_dir>/public/web-front.pem, readable by everyone, and notes
// it and its fingerprint in status.json. A certificate is public; a buyer
// needs it to pin the web front.
func (s *Supervisor) publishWebCert() {
	src := cmp.Or(s.cfg.Outside.TLSCert, filepath.Join(s.dataDir("outside"), "tls", "tls.pem"))
	b, err := os.ReadFile(src)
	blk, _ := pem.Decode(b)
	if err != nil || blk == nil || blk.Type != "CERTIFICATE" {
		s.log.Warn("web front certificate not published", "file", src, "error", err)
		return
	}
	dir := filepath.Join(s.cfg.RunDir, "public")
	dst := filepath.Join(dir, "web-front.pem")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.log.Warn("web front certificate not published", "error", err)
		return
	}
	if err := durable.WriteFile(dst, pem.EncodeToMemory(blk), 0o644); err != nil {
		s.log.Warn("web front certificate not published", "error", err)
		return
	}
	sum := sha256.Sum256(blk.Bytes)
	s.mu.Lock()
	s.status.WebCert, s.status.WebCertSHA256 = dst, strings.ToUpper(hex.EncodeToString(sum[:]))
	s.mu.Unlock()
	s.writeStatus()
}

// allRunning reports whether every compartment is attached and running.
func (s *Supervisor) allRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.status.Compartments {
		if c.State != Running {
			return false
		}
	}
	return len(s.status.Compartments) > 0
}

func (s *Supervisor) pluginDir(n string) string { return filepath.Join(s.cfg.RunDir, "plugin", n) }
func (s *Supervisor) gateDir(n string) string   { return filepath.Join(s.cfg.RunDir, "gate", n) }
func (s *Supervisor) dataDir(n string) string   { return filepath.Join(s.cfg.DataDir, n) }

// prepare makes every directory with its owner and mode, and writes the
// embedded storefront as a read-only tree if no static dir is configured.
func (s *Supervisor) prepare() error {
	for _, d := range []string{s.cfg.RunDir, s.cfg.DataDir, filepath.Join(s.cfg.RunDir, "plugin"), filepath.Join(s.cfg.RunDir, "gate")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("prepare %s: %w", d, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(s.cfg.DataDir, "audit"), 0o700); err != nil {
		return fmt.Errorf("prepare audit dir: %w", err)
	}
	for _, n := range manifest.Names() {
		id := s.ids[n]
		for _, d := range []string{s.pluginDir(n), s.gateDir(n), s.dataDir(n)} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("prepare %s: %w", d, err)
			}
			// The gate agent (in the compartment's group) may pass through
			// the plugin directory to the socket; nothing else.
			mode := fs.FileMode(0o700)
			if d == s.pluginDir(n) {
				mode = 0o710
			}
			if err := os.Chmod(d, mode); err != nil {
				return err
			}
			if os.Geteuid() == 0 {
				if err := os.Chown(d, id[0], id[1]); err != nil {
					return fmt.Errorf("prepare %s: %w", d, err)
				}
			}
		}
	}
	s.static = s.cfg.Outside.StaticDir
	if s.static == "" {
		s.static = filepath.Join(s.cfg.RunDir, "static")
		if err := writeTree(s.static, site.Files, "static"); err != nil {
			return fmt.Errorf("write storefront: %w", err)
		}
	}
	return nil
}

// writeTree copies an embedded tree to dir: directories 0755, files 0644,
// owned by the supervisor, so compartments may read and none may write.
func writeTree(dir string, fsys fs.FS, root string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, strings.TrimPrefix(p, root))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
}

// superviseGate runs the gate agent, restarting it if it dies; a new gate
// agent is told every running compartment.
func (s *Supervisor) superviseGate(ctx context.Context, fail context.CancelCauseFunc) {
	c := crashes{r: s.cfg.Restart}
	for ctx.Err() == nil {
		started := time.Now()
		err := s.runGate(ctx)
		if ctx.Err() != nil {
			return
		}
		backoff, n, giveUp := c.record(started, time.Now())
		if giveUp {
			fail(fmt.Errorf("%w: it died %d times within %s, last: %v; its log above says why",
				ErrGateFailed, n, s.cfg.Restart.Window, err))
			return
		}
		s.log.Error("gate agent died; restarting", "error", err, "backoff", backoff)
		s.mu.Lock()
		s.status.Gate.State = Backoff
		s.status.Gate.Restarts++
		s.mu.Unlock()
		if !sleep(ctx, backoff) {
			return
		}
	}
}

// runGate starts the gate agent in its sandbox (gate.go), tells it its
// config, the running compartments and the queued events on its stdin, and
// waits for it to exit; when ctx ends it closes the control channel, which
// stops the gate agent.
func (s *Supervisor) runGate(ctx context.Context) error {
	spec, gc := s.gateSpec()
	first, err := json.Marshal(gc)
	if err != nil {
		return err
	}
	if err := s.chownAudit(); err != nil {
		return err
	}
	inR, in, err := os.Pipe()
	if err != nil {
		return err
	}
	acks, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		in.Close()
		return err
	}
	spec.Stdin, spec.Stdout = inR, outW
	p, err := s.rt.Start(ctx, spec)
	inR.Close()
	outW.Close()
	if err != nil {
		in.Close()
		acks.Close()
		return fmt.Errorf("start gate agent: %w", err)
	}
	defer p.Close()
	go func() {
		defer acks.Close()
		s.readAcks(acks)
	}()
	s.mu.Lock()
	_, err = in.Write(append(first, '\n'))
	for _, a := range s.attached {
		if err == nil {
			err = writeJSONLine(in, gateagent.Control{Attach: &a})
		}
	}
	for _, e := range s.takePendingLocked() {
		if err == nil {
			err = writeJSONLine(in, gateagent.Control{Event: &e})
		}
	}
	s.gateIn = in
	s.status.GatePid = p.Pid()
	s.status.Gate.State, s.status.Gate.Pid, s.status.Gate.Layers = Running, p.Pid(), p.Layers()
	s.status.Gate.Since = time.Now().UTC().Format(time.RFC3339Nano)
	s.mu.Unlock()
	s.log.Info("gate agent running", "pid", p.Pid(), "uid", spec.UID, "layers", p.Layers())
	s.writeStatus()
	if err != nil {
		p.Signal(syscall.SIGKILL)
	}
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.mu.Lock()
		s.gateIn = nil
		s.mu.Unlock()
		in.Close() // the gate agent stops when its control channel closes
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			p.Signal(syscall.SIGKILL)
			err = <-done
		}
	}
	s.mu.Lock()
	s.gateIn = nil
	s.status.GatePid = 0
	s.status.Gate.State, s.status.Gate.Pid = Stopped, 0
	s.status.Gate.Since = time.Now().UTC().Format(time.RFC3339Nano)
	s.mu.Unlock()
	in.Close()
	s.writeStatus()
	return err
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// tellGate records an attachment (Addr empty: detached) and passes it to
// the running gate agent.
func (s *Supervisor) tellGate(a gateagent.Attachment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.Addr == "" {
		delete(s.attached, a.Name)
	} else {
		s.attached[a.Name] = a
	}
	s.sendLocked(gateagent.Control{Attach: &a})
}

// audit has the gate agent write e to the audit log; events that happen
// while no gate agent runs are queued (at most maxPending; the rest are
// counted and reported as one record each compartment) and sent when one
// starts.
func (s *Supervisor) audit(e gateagent.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gateIn == nil {
		if len(s.pending) >= maxPending {
			if s.overflow == nil {
				s.overflow = map[string]int{}
			}
			s.overflow[e.Compartment]++
			return
		}
		s.pending = append(s.pending, e)
		return
	}
	s.sendLocked(gateagent.Control{Event: &e})
}

// takePendingLocked empties the queue: its events, then one record for
// each compartment whose events did not fit.
func (s *Supervisor) takePendingLocked() []gateagent.Event {
	out := s.pending
	for _, name := range slices.Sorted(maps.Keys(s.overflow)) {
		out = append(out, droppedEvent(name, s.overflow[name], "the queue kept while the gate agent was down"))
	}
	s.pending, s.overflow = nil, nil
	return out
}

func (s *Supervisor) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

func (s *Supervisor) sendLocked(m gateagent.Control) {
	if s.gateIn == nil {
		return
	}
	if err := writeJSONLine(s.gateIn, m); err != nil {
		s.log.Error("tell gate agent", "error", err)
	}
}

// supervise keeps one compartment running: start, wait, back off, restart;
// after MaxCrashes crashes within Window it is marked failed.
func (s *Supervisor) supervise(ctx context.Context, name string) {
	c := crashes{r: s.cfg.Restart}
	for {
		if !s.waitUnheld(ctx, name) {
			return
		}
		s.setState(name, Starting, 0)
		started := time.Now()
		err := s.runOnce(ctx, name)
		if ctx.Err() != nil {
			s.setState(name, Stopped, 0)
			return
		}
		if s.isHeld(name) { // stopped by an operator: no crash
			continue
		}
		backoff, n, giveUp := c.record(started, time.Now())
		if giveUp {
			s.log.Error("compartment keeps crashing; marked failed and not restarted",
				"compartment", name, "crashes", n, "window", s.cfg.Restart.Window, "error", err)
			s.setState(name, Failed, 0)
			return
		}
		s.log.Warn("compartment died; restarting after back-off", "compartment", name, "error", err, "backoff", backoff)
		s.setState(name, Backoff, 0)
		s.mu.Lock()
		s.status.Compartments[name].Restarts++
		s.mu.Unlock()
		if !sleep(ctx, backoff) {
			s.setState(name, Stopped, 0)
			return
		}
	}
}

// runOnce starts the compartment, attaches it to the gate agent and waits
// for it to exit (or for ctx to end, then stops it).
func (s *Supervisor) runOnce(ctx context.Context, name string) error {
	p, addr, err := s.start(ctx, name)
	if err != nil {
		return err
	}
	defer p.Close()
	s.mu.Lock()
	s.status.Compartments[name].Layers = p.Layers()
	s.mu.Unlock()
	// "running" once the gate agent acknowledges it can reach this process
	// (readAcks), so the pid is recorded before the gate agent is told.
	s.setState(name, Starting, p.Pid())
	s.tellGate(gateagent.Attachment{Name: name, Addr: addr, Pid: p.Pid()})
	s.log.Info("compartment running", "compartment", name, "pid", p.Pid(), "layers", p.Layers())
	defer s.tellGate(gateagent.Attachment{Name: name})

	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		return fmt.Errorf("%s exited: %w", name, exitErr(err))
	case <-ctx.Done():
		p.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			s.log.Warn("compartment ignored SIGTERM; killing", "compartment", name)
			p.Signal(syscall.SIGKILL)
			<-done
		}
		return nil
	}
}

func exitErr(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

// start builds the compartment's spec, starts it and reads the go-plugin
// handshake line from its stdout.
func (s *Supervisor) start(ctx context.Context, name string) (sandbox.Process, string, error) {
	m := manifest.Lookup(name)
	if m == nil {
		return nil, "", fmt.Errorf("start %s: not a declared compartment", name)
	}
	spec, err := s.spec(m)
	if err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, "", err
	}
	spec.Stdout = w
	p, err := s.rt.Start(ctx, spec)
	w.Close()
	if err != nil {
		r.Close()
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	addr, err := readHandshake(r, 15*time.Second)
	if err != nil {
		p.Signal(syscall.SIGKILL)
		p.Wait()
		p.Close()
		r.Close()
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	go func() { // whatever the program prints later goes to our log stream
		defer r.Close()
		s.relayOutput(name, r)
	}()
	return p, addr, nil
}

// Audit has the gate agent (the one audit writer) record an event seen
// below it, e.g. a kernel layer's denial.
func (s *Supervisor) Audit(e gateagent.Event) { s.audit(e) }

// readHandshake reads go-plugin's "CORE|APP|unix|ADDR|grpc|..." line.
func readHandshake(r *os.File, timeout time.Duration) (string, error) {
	r.SetReadDeadline(time.Now().Add(timeout))
	defer r.SetReadDeadline(time.Time{})
	// One byte at a time: nothing after the line may be swallowed.
	var line []byte
	b := make([]byte, 1)
	for len(line) < 4096 && (len(line) == 0 || line[len(line)-1] != '\n') {
		if _, err := r.Read(b); err != nil {
			return "", fmt.Errorf("%w: %v (read %q)", ErrHandshake, err, line)
		}
		line = append(line, b[0])
	}
	parts := strings.Split(strings.TrimSpace(string(line)), "|")
	if len(parts) < 5 || parts[2] != "unix" || parts[4] != "grpc" {
		return "", fmt.Errorf("%w: unexpected line %q", ErrHandshake, line)
	}
	return parts[3], nil
}

// readAcks marks a compartment running when the gate agent has attached
// its current process.
func (s *Supervisor) readAcks(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var a gateagent.Attachment
		if json.Unmarshal(sc.Bytes(), &a) != nil {
			continue
		}
		s.mu.Lock()
		cs := s.status.Compartments[a.Name]
		current := cs != nil && cs.Pid == a.Pid && cs.State == Starting
		s.mu.Unlock()
		if current {
			s.setState(a.Name, Running, a.Pid)
		}
	}
}

func (s *Supervisor) setState(name string, st State, pid int) {
	s.mu.Lock()
	cs := s.status.Compartments[name]
	cs.State, cs.Pid, cs.Since = st, pid, time.Now().UTC().Format(time.RFC3339Nano)
	s.mu.Unlock()
	s.writeStatus()
}

// writeStatus writes status.json atomically.
func (s *Supervisor) writeStatus() {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.MarshalIndent(s.status, "", "  ")
	if err != nil {
		return
	}
	p := filepath.Join(s.cfg.RunDir, "status.json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		os.Rename(tmp, p)
	}
}

// crashes is the restart policy of one process: the first crash within the
// window restarts at once (a lone crash costs no waiting), repeated ones
// wait an exponential back-off from InitialBackoff, and after MaxCrashes
// crashes within the window it gives up.
type crashes struct {
	r       config.Restart
	at      []time.Time
	backoff time.Duration
}

// record notes a crash of a run from started to now and returns how long
// to wait, the crashes within the window and whether to give up.
func (c *crashes) record(started, now time.Time) (wait time.Duration, n int, giveUp bool) {
	c.at = append(c.at, now)
	for len(c.at) > 0 && now.Sub(c.at[0]) > c.r.Window {
		c.at = c.at[1:]
	}
	switch {
	case len(c.at) == 1 || now.Sub(started) > c.r.Window:
		c.backoff = 0 // alone in the window: at once
	case c.backoff == 0:
		c.backoff = c.r.InitialBackoff
	default:
		c.backoff = min(2*c.backoff, c.r.MaxBackoff)
	}
	return c.backoff, len(c.at), len(c.at) >= c.r.MaxCrashes
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
