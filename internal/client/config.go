package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the client's one configuration file (YAML). Unknown keys are
// refused; relative paths are relative to the file's directory.
//
//	version: 1
//	credential: acme-buyer          # keystore label of our key and certificate
//	id: acme-buyer                  # our partner id (default: credential)
//	keystore:
//	  dir: keystore                 # PKCS#12 files (default: keystore)
//	  password_env: E2S_PASSWORD    # or password_file: pass.txt (mode 0600)
//	  # pkcs11: {module: /usr/lib/softhsm/libsofthsm2.so, token: e2s, pin_env: E2S_PIN}
//	certstore:
//	  dir: certstore                # partner certificates (default: certstore)
//	  roots: ca.pem                 # optional trust anchors for exchanged certificates
//	  trust_on_first_use: false     # accept a partner's self-signed certificate on first exchange
//	  max_message_age: 24h          # how old an exchange message may be
//	receipts_to: buyer@example.com  # receiptsTo of receipt requests (default: id)
type Config struct {
	Version    int       `yaml:"version"`
	Credential string    `yaml:"credential"`
	ID         string    `yaml:"id"`
	Keystore   Keystore  `yaml:"keystore"`
	Certstore  Certstore `yaml:"certstore"`
	ReceiptsTo string    `yaml:"receipts_to"`

	// Path is the file the configuration was read from.
	Path string `yaml:"-"`
}

// Keystore names where the credential lives: a directory of PKCS#12 files
// with a password from an environment variable or a file, or a PKCS#11 token.
type Keystore struct {
	Dir          string  `yaml:"dir"`
	PasswordEnv  string  `yaml:"password_env"`
	PasswordFile string  `yaml:"password_file"`
	PKCS11       *PKCS11 `yaml:"pkcs11"`
}

// PKCS11 selects a token and the source of its user PIN.
type PKCS11 struct {
	Module  string `yaml:"module"`
	Token   string `yaml:"token"`
	PINEnv  string `yaml:"pin_env"`
	PINFile string `yaml:"pin_file"`
}

// Certstore is the directory of partner certificates and the policy for
// certificates received by exchange.
type Certstore struct {
	Dir             string `yaml:"dir"`
	Roots           string `yaml:"roots"`
	TrustOnFirstUse bool   `yaml:"trust_on_first_use"`
	// MaxMessageAge bounds the age (and clock skew) of co-ordination
	// messages; files may take a while to travel (default 24h).
	MaxMessageAge time.Duration `yaml:"max_message_age"`
}

// Version is the configuration format this client reads.
const Version = 1

// DefaultPasswordEnv is the keystore password variable when the file names
// no password source.
const DefaultPasswordEnv = "E2S_PASSWORD"

// DefaultMaxMessageAge bounds the age of certificate exchange messages.
const DefaultMaxMessageAge = 24 * time.Hour

// DefaultConfigPath is ~/.config/e2s/e2s.yaml (following XDG_CONFIG_HOME).
func DefaultConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return filepath.Join(".config", "e2s", "e2s.yaml")
	}
	return filepath.Join(dir, "e2s", "e2s.yaml")
}

// LoadConfig reads and validates the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist; 'e2s init' writes a default one, or pass -config FILE", ErrConfig, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// ParseConfig decodes data strictly, fills in defaults, resolves relative
// paths against dir and validates the result.
func ParseConfig(data []byte, dir string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file; it needs at least version: 1 and credential: LABEL", ErrConfig)
		}
		return nil, fmt.Errorf("%w: %s", ErrConfig, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if err := c.defaults(dir); err != nil {
		return nil, err
	}
	return &c, c.validate()
}

func (c *Config) defaults(dir string) error {
	if c.ID == "" {
		c.ID = c.Credential
	}
	if c.ReceiptsTo == "" {
		c.ReceiptsTo = c.ID
	}
	ks := &c.Keystore
	if ks.PKCS11 == nil {
		if ks.Dir == "" {
			ks.Dir = "keystore"
		}
		if ks.PasswordEnv == "" && ks.PasswordFile == "" {
			ks.PasswordEnv = DefaultPasswordEnv
		}
	}
	if c.Certstore.MaxMessageAge == 0 {
		c.Certstore.MaxMessageAge = DefaultMaxMessageAge
	}
	if c.Certstore.Dir == "" {
		c.Certstore.Dir = "certstore"
	}
	for _, p := range []*string{&ks.Dir, &ks.PasswordFile, &c.Certstore.Dir, &c.Certstore.Roots} {
		*p = resolve(*p, dir)
	}
	if ks.PKCS11 != nil {
		ks.PKCS11.PINFile = resolve(ks.PKCS11.PINFile, dir)
	}
	return nil
}

// resolve expands a leading ~/ and makes p absolute relative to dir.
func resolve(p, dir string) string {
	if p == "" {
		return ""
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.Join(home, p[1:])
		}
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p)
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

func (c *Config) validate() error {
	if c.Version != Version {
		return invalid("version", "%d is not supported; write version: %d", c.Version, Version)
	}
	if c.Credential == "" {
		return invalid("credential", "missing; name the keystore label of your key (the -label you give e2s keygen)")
	}
	if c.Certstore.MaxMessageAge < 0 {
		return invalid("certstore.max_message_age", "must be positive, e.g. 24h")
	}
	ks := c.Keystore
	if p := ks.PKCS11; p != nil {
		if ks.Dir != "" || ks.PasswordEnv != "" || ks.PasswordFile != "" {
			return invalid("keystore", "use either pkcs11 or dir/password_env/password_file, not both")
		}
		if p.Module == "" || p.Token == "" {
			return invalid("keystore.pkcs11", "module and token are required")
		}
		if (p.PINEnv == "") == (p.PINFile == "") {
			return invalid("keystore.pkcs11", "name exactly one of pin_env or pin_file")
		}
		return nil
	}
	if ks.PasswordEnv != "" && ks.PasswordFile != "" {
		return invalid("keystore", "name either password_env or password_file, not both")
	}
	return nil
}

// secret reads a password or PIN from the environment variable env or the
// file path. A file must not be readable by group or others.
func secret(what, env, path string) (string, error) {
	if env != "" {
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return "", fmt.Errorf("%w: %s: environment variable %s is not set; export it or name a password_file in the config", ErrNoSecret, what, env)
		}
		return v, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrNoSecret, what, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%w: %s: %s is readable by others (mode %v); run chmod 600 %s", ErrNoSecret, what, path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrNoSecret, what, err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%w: %s: %s is empty", ErrNoSecret, what, path)
	}
	return v, nil
}

// defaultConfig is the file InitConfig writes: a keystore of PKCS#12 files
// and a certstore beside it, the password from $E2S_PASSWORD.
const defaultConfig = `# e2s configuration (see cmd/e2s/README.md); relative paths are relative to this file.
version: 1
# The keystore label of your key and certificate ('e2s keygen' makes it).
credential: %s
keystore:
  dir: keystore
  password_env: E2S_PASSWORD    # or password_file: pass.txt (mode 0600)
certstore:
  dir: certstore
  trust_on_first_use: %t     # true: accept a partner's self-signed certificate on its first exchange
`

// InitConfig writes a default configuration file at path for the
// credential label, refusing to overwrite one, and returns it as read.
func InitConfig(path, credential string, trustOnFirstUse bool) (*Config, error) {
	if err := validLabel(credential); err != nil {
		return nil, err
	}
	data := fmt.Sprintf(defaultConfig, credential, trustOnFirstUse)
	if _, err := ParseConfig([]byte(data), filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("init config: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrConfigExists)
	}
	if err != nil {
		return nil, fmt.Errorf("init config: %w", err)
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("init config: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("init config: %w", err)
	}
	return LoadConfig(path)
}

// validLabel accepts what a keystore label may be: 1-64 characters of
// [A-Za-z0-9._-], not starting with '.'.
func validLabel(label string) error {
	ok := label != "" && len(label) <= 64 && label[0] != '.'
	for _, r := range label {
		ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}
	if !ok {
		return fmt.Errorf("credential %q: 1-64 letters, digits, '.', '_' or '-': %w", label, ErrUsage)
	}
	return nil
}
