// Package compartment declares the outside compartment (the web front) and
// its own config section without linking its code, so that the web front's
// program reads its defaults from here rather than from the appliance's
// config package.
package compartment

import (
	"time"

	"github.com/e2sgate/e2sgate/compartments/manifest"
)

func init() {
	manifest.Register(&manifest.Manifest{
		Name:    "outside",
		Order:   50,
		UID:     64001,
		GID:     64001,
		Label:   "restricted:web",
		Limits:  manifest.Limits{MemoryMB: 256, Pids: 128, CPUPercent: 100},
		Section: "outside",
		Network: manifest.NetNone,
		Mounts:  []manifest.Mount{manifest.MountStaticSite},
		Sockets: []manifest.Socket{manifest.SocketWeb},
		Code:    []string{"outside"},
		// The web front's defaults are here, not in the appliance's config
		// package (and its YAML decoder).
		MayNotLink: []string{"gateagent", "internal/daemon/supervisor", "compartments/sandbox", "internal/daemon/config"},
	})
}

// Config is the web front's section of the appliance config (outside:),
// handed to the program as JSON.
type Config struct {
	StaticDir    string        `yaml:"static_dir" json:"static_dir"` // empty: the embedded storefront
	TLSCert      string        `yaml:"tls_cert" json:"tls_cert"`     // empty: self-signed, made on first start
	TLSKey       string        `yaml:"tls_key" json:"tls_key"`
	MaxBody      int64         `yaml:"max_body" json:"max_body"`
	ReadTimeout  time.Duration `yaml:"read_timeout" json:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout" json:"write_timeout"`
	CallTimeout  time.Duration `yaml:"call_timeout" json:"call_timeout"`
}

// DefaultConfig is the web front's section when the config file sets none.
func DefaultConfig() Config {
	return Config{MaxBody: 1 << 20, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, CallTimeout: 20 * time.Second}
}
