// Package config is e2sgated's one versioned configuration file. Every field
// has a default in code, so the appliance runs with no file at all; a file
// overrides defaults, unknown keys are refused, and each compartment gets
// only its own section.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	// Every program that reads the config runs every declared compartment.
	_ "github.com/e2sgate/e2sgate/compartments/builtins"
	"github.com/e2sgate/e2sgate/compartments/label"
	"github.com/e2sgate/e2sgate/compartments/manifest"
	outside "github.com/e2sgate/e2sgate/outside/compartment"
)

// ErrInvalid: the configuration file is refused.
var ErrInvalid = errors.New("invalid configuration")

// Config is the whole file.
type Config struct {
	Version int `yaml:"version"`
	// Instance names this appliance's host objects (cgroup parent,
	// container ids, network namespaces), so two can share a host.
	Instance  string `yaml:"instance"`
	Listen    string `yaml:"listen"`     // the web front's address; the supervisor binds it
	RunDir    string `yaml:"run_dir"`    // sockets, status
	DataDir   string `yaml:"data_dir"`   // compartments' durable data and the audit log
	BinDir    string `yaml:"bin_dir"`    // compartment programs; empty: beside e2sgated
	PolicyDir string `yaml:"policy_dir"` // empty: the embedded policies
	Runtime   string `yaml:"runtime"`    // sandbox runtime: runc (default), containerd, or exec (unconfined)
	// ContainerdAddress is containerd's socket (runtime: containerd).
	ContainerdAddress string `yaml:"containerd_address"`
	// Confinement "required" refuses to start without every kernel layer;
	// "lowered" starts anyway and says so loudly in the log and audit.
	Confinement string     `yaml:"confinement"`
	Restart     Restart    `yaml:"restart"`
	Internal    Internal   `yaml:"internal_network"`
	Outside     Outside    `yaml:"outside"`
	Payment     Payment    `yaml:"payment"`
	BackOffice  BackOffice `yaml:"back_office"`
	Simulators  bool       `yaml:"simulators"` // run the acquirer and back-office simulators (see supervisor/simulators.go)
	// AuditQuotaMB bounds the gate's audit log (records, hashes and
	// checkpoints); 0: the file system's capacity (docs/OPERATIONS.md).
	AuditQuotaMB int64 `yaml:"audit_quota_mb"`
	// GateLimits are each compartment's budget of calls through the gate
	// (docs/OPERATIONS.md "Limits").
	GateLimits GateLimits `yaml:"gate_limits"`
	// Gate is the gate agent's own sandbox: the ids it runs as (not root,
	// none of a compartment's) and its cgroup limits.
	Gate         Gate         `yaml:"gate"`
	Compartments Compartments `yaml:"compartments"`
}

// GateLimits bound each caller at the gate agent, every compartment on its
// own: a call over them is answered 429 and recorded in aggregate, one
// record per caller and reason per report interval.
type GateLimits struct {
	Concurrent     int           `yaml:"concurrent"`      // calls one compartment may have in flight
	PerSecond      float64       `yaml:"per_second"`      // calls per second, sustained
	Burst          int           `yaml:"burst"`           // calls at once above that rate
	ReportInterval time.Duration `yaml:"report_interval"` // at most one refusal record per caller and reason per interval
}

// Gate is the gate agent's section.
type Gate struct {
	UID      int   `yaml:"uid"`
	GID      int   `yaml:"gid"`
	MemoryMB int64 `yaml:"memory_mb"`
	Pids     int64 `yaml:"pids"`
	CPU      int   `yaml:"cpu_percent"`
}

// Payment is how the payment compartment reaches the acquirer: only through
// the inside compartment's SOCKS filter, which allows exactly Acquirer (and
// so does the inside compartment's network allowlist).
type Payment struct {
	Acquirer     string        `yaml:"acquirer"`      // ip:port on the internal network; empty: none
	AcquirerCert string        `yaml:"acquirer_cert"` // PEM file of the acquirer's certificate, pinned
	Timeout      time.Duration `yaml:"timeout"`       // per request to the acquirer
}

// BackOffice is where accepted orders go to the merchant's order processing.
type BackOffice struct {
	SpoolDir string `yaml:"spool_dir"` // empty: <data_dir>/inside/spool
}

// Compartments has one section per declared compartment (see
// compartments/manifest), keyed by name. A file overrides single fields of
// a section (the rest keep their defaults); an undeclared name or an
// unknown field is refused.
type Compartments map[string]*Compartment

// ByName maps each compartment's name to its section.
func (c Compartments) ByName() map[string]*Compartment { return c }

// UnmarshalYAML decodes the file's sections over the defaults in c. It uses
// yaml.v3's older unmarshaler interface, which keeps the decoder's
// known-fields check for the sections' fields.
func (c *Compartments) UnmarshalYAML(unmarshal func(any) error) error {
	var patches map[string]*compartmentPatch
	if err := unmarshal(&patches); err != nil {
		return err
	}
	if *c == nil {
		*c = Compartments{}
	}
	for name, p := range patches {
		if manifest.Lookup(name) == nil {
			return fmt.Errorf("compartments: %q is not a compartment (have %s)", name, strings.Join(manifest.Names(), ", "))
		}
		if p == nil { // "name: ~" drops the section; Validate reports it missing
			delete(*c, name)
			continue
		}
		cc := (*c)[name]
		if cc == nil {
			cc = &Compartment{}
			(*c)[name] = cc
		}
		p.apply(cc)
	}
	return nil
}

// compartmentPatch is a section as written in a file: nil fields keep the
// default.
type compartmentPatch struct {
	UID      *int    `yaml:"uid"`
	GID      *int    `yaml:"gid"`
	Label    *string `yaml:"label"`
	MemoryMB *int64  `yaml:"memory_mb"`
	Pids     *int64  `yaml:"pids"`
	CPU      *int    `yaml:"cpu_percent"`
}

func (p *compartmentPatch) apply(c *Compartment) {
	set(&c.UID, p.UID)
	set(&c.GID, p.GID)
	set(&c.Label, p.Label)
	set(&c.MemoryMB, p.MemoryMB)
	set(&c.Pids, p.Pids)
	set(&c.CPU, p.CPU)
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// Restart is the supervisor's back-off for dying compartments.
type Restart struct {
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	MaxCrashes     int           `yaml:"max_crashes"` // within Window, then the compartment is marked failed
	Window         time.Duration `yaml:"window"`
}

// Internal is the internal network the inside compartment is attached to
// (a veth into a namespace of its own, never the host's).
type Internal struct {
	InsideAddress string   `yaml:"inside_address"` // the inside compartment's address, CIDR
	Allow         []string `yaml:"allow"`          // host:port endpoints inside may connect to; all else dropped
}

// Compartment is one compartment's section.
type Compartment struct {
	UID      int    `yaml:"uid"`
	GID      int    `yaml:"gid"`
	Label    string `yaml:"label"`
	MemoryMB int64  `yaml:"memory_mb"`
	Pids     int64  `yaml:"pids"`
	CPU      int    `yaml:"cpu_percent"`
}

// Outside is the web front's own section, handed to it as JSON; it is
// declared with the outside compartment so that the web front's program
// need not link this package.
type Outside = outside.Config

// Names are the compartments the appliance runs, in start order, as
// declared when the program started. Deprecated: call manifest.Names,
// which also sees compartments registered later (tests).
var Names = manifest.Names()

// Default is the embedded configuration.
func Default() *Config {
	return &Config{
		Version:           1,
		Instance:          "e2sgate",
		Listen:            "127.0.0.1:8443",
		RunDir:            "/run/e2sgate",
		DataDir:           "/var/lib/e2sgate",
		Runtime:           "runc",
		ContainerdAddress: "/run/containerd/containerd.sock",
		Confinement:       "required",
		Internal:          Internal{InsideAddress: "10.77.0.2/24"},
		Payment:           Payment{Timeout: 10 * time.Second},
		Simulators:        true,
		Restart:           Restart{InitialBackoff: 200 * time.Millisecond, MaxBackoff: 10 * time.Second, MaxCrashes: 5, Window: time.Minute},
		Outside:           outside.DefaultConfig(),
		GateLimits:        GateLimits{Concurrent: 128, PerSecond: 500, Burst: 1000, ReportInterval: 10 * time.Second},
		// Every call passes the gate: it gets the whole machine's CPU.
		Gate:         Gate{UID: 64000, GID: 64000, MemoryMB: 512, Pids: 256, CPU: 200},
		Compartments: DefaultCompartments(),
	}
}

// DefaultCompartments are the declared compartments' sections with the
// defaults from their manifests.
func DefaultCompartments() Compartments {
	cs := Compartments{}
	for _, m := range manifest.All() {
		cs[m.Name] = &Compartment{UID: m.UID, GID: m.GID, Label: m.Label,
			MemoryMB: m.Limits.MemoryMB, Pids: m.Limits.Pids, CPU: m.Limits.CPUPercent}
	}
	return cs
}

// Load reads path over the defaults; an empty path is the defaults.
func Load(path string) (*Config, error) {
	c := Default()
	if path == "" {
		return c, c.Validate()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := Parse(c, data); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes data over c and validates the result.
func Parse(c *Config, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, strings.ReplaceAll(err.Error(), "\n", ";"))
	}
	return c.Validate()
}

var instanceRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,11}$`)

var uidRange = [2]int{1000, 1 << 30}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// Validate checks every field and names the first one at fault.
func (c *Config) Validate() error {
	if c.Version != 1 {
		return invalid("version", "%d is not supported; write version: 1", c.Version)
	}
	if !instanceRE.MatchString(c.Instance) {
		return invalid("instance", "%q must be 1 to 12 lower-case letters, digits or dashes, starting with a letter", c.Instance)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return invalid("listen", "%q is not host:port", c.Listen)
	}
	for f, v := range map[string]string{"run_dir": c.RunDir, "data_dir": c.DataDir} {
		if !strings.HasPrefix(v, "/") {
			return invalid(f, "%q must be an absolute path", v)
		}
	}
	if !slices.Contains([]string{"exec", "runc", "containerd"}, c.Runtime) {
		return invalid("runtime", "%q is not one of runc, containerd, exec", c.Runtime)
	}
	if c.Runtime == "containerd" && !strings.HasPrefix(c.ContainerdAddress, "/") {
		return invalid("containerd_address", "%q must be the absolute path of containerd's socket", c.ContainerdAddress)
	}
	if !slices.Contains([]string{"required", "lowered"}, c.Confinement) {
		return invalid("confinement", "%q is not one of required, lowered", c.Confinement)
	}
	if c.Runtime == "exec" && c.Confinement == "required" {
		return invalid("runtime", "exec enforces no confinement; use runc or set confinement: lowered")
	}
	r := c.Restart
	if r.InitialBackoff <= 0 || r.MaxBackoff < r.InitialBackoff || r.MaxCrashes < 1 || r.Window <= 0 {
		return invalid("restart", "need 0 < initial_backoff <= max_backoff, max_crashes >= 1, window > 0")
	}
	if c.AuditQuotaMB < 0 {
		return invalid("audit_quota_mb", "%d is negative; 0 means the file system's capacity", c.AuditQuotaMB)
	}
	if g := c.GateLimits; g.Concurrent < 1 || g.PerSecond <= 0 || g.Burst < 1 || g.ReportInterval < time.Second {
		return invalid("gate_limits", "need concurrent >= 1, per_second > 0, burst >= 1, report_interval >= 1s")
	}
	if _, err := netip.ParsePrefix(c.Internal.InsideAddress); err != nil {
		return invalid("internal_network.inside_address", "%q is not an address/prefix such as 10.77.0.2/24", c.Internal.InsideAddress)
	}
	for _, a := range c.Internal.Allow {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return invalid("internal_network.allow", "%q is not ip:port", a)
		}
	}
	if p := c.Payment; p.Acquirer != "" || p.AcquirerCert != "" {
		if _, err := netip.ParseAddrPort(p.Acquirer); err != nil {
			return invalid("payment.acquirer", "%q is not ip:port", p.Acquirer)
		}
		if !strings.HasPrefix(p.AcquirerCert, "/") {
			return invalid("payment.acquirer_cert", "%q must be the absolute path of the acquirer's certificate (PEM)", p.AcquirerCert)
		}
	}
	if c.Payment.Timeout <= 0 {
		return invalid("payment.timeout", "must be positive")
	}
	if d := c.BackOffice.SpoolDir; d != "" && !strings.HasPrefix(d, "/") {
		return invalid("back_office.spool_dir", "%q must be an absolute path", d)
	}
	o := c.Outside
	if o.MaxBody <= 0 || o.MaxBody > 64<<20 {
		return invalid("outside.max_body", "%d is outside 1..%d", o.MaxBody, 64<<20)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return invalid("outside.tls_cert", "tls_cert and tls_key go together")
	}
	if o.ReadTimeout <= 0 || o.WriteTimeout <= 0 || o.CallTimeout <= 0 {
		return invalid("outside", "read_timeout, write_timeout and call_timeout must be positive")
	}
	names := manifest.Names()
	if len(names) == 0 {
		return invalid("compartments", "no compartment is declared; the program must import compartments/builtins")
	}
	for _, n := range names {
		cc, f := c.Compartments[n], "compartments."+n
		if cc == nil {
			return invalid(f, "missing")
		}
		if cc.UID < uidRange[0] || cc.UID >= uidRange[1] || cc.GID < uidRange[0] || cc.GID >= uidRange[1] {
			return invalid(f+".uid", "uid %d / gid %d must be unprivileged (>= %d)", cc.UID, cc.GID, uidRange[0])
		}
		if _, err := label.Parse(cc.Label); err != nil {
			return invalid(f+".label", "%v", err)
		}
		if cc.MemoryMB < 16 || cc.Pids < 8 || cc.CPU < 1 {
			return invalid(f, "memory_mb >= 16, pids >= 8 and cpu_percent >= 1 are required")
		}
	}
	g := c.Gate
	if g.UID < uidRange[0] || g.UID >= uidRange[1] || g.GID < uidRange[0] || g.GID >= uidRange[1] {
		return invalid("gate.uid", "uid %d / gid %d must be unprivileged (>= %d)", g.UID, g.GID, uidRange[0])
	}
	if g.MemoryMB < 64 || g.Pids < 32 || g.CPU < 10 {
		return invalid("gate", "memory_mb >= 64, pids >= 32 and cpu_percent >= 10 are required")
	}
	uids, gids := map[int]string{g.UID: "the gate agent"}, map[int]string{g.GID: "the gate agent"}
	for _, n := range names {
		cc := c.Compartments[n]
		if other, dup := uids[cc.UID]; dup {
			return invalid("compartments."+n+".uid", "%d is also %s's; every compartment needs its own uid", cc.UID, other)
		}
		uids[cc.UID] = n
		// The gate agent is in each compartment's group (to reach its
		// plugin socket): a shared gid would open one compartment's
		// socket to another.
		if other, dup := gids[cc.GID]; dup {
			return invalid("compartments."+n+".gid", "%d is also %s's; every compartment needs its own gid", cc.GID, other)
		}
		gids[cc.GID] = n
	}
	return nil
}
