package client

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home directory")
	}
	tests := []struct {
		name string
		yaml string
		want func(c *Config) bool
		err  error
	}{
		{"defaults", "version: 1\ncredential: acme\n", func(c *Config) bool {
			return c.ID == "acme" && c.ReceiptsTo == "acme" && c.Keystore.Dir == "/etc/e2s/keystore" &&
				c.Keystore.PasswordEnv == DefaultPasswordEnv && c.Certstore.Dir == "/etc/e2s/certstore" &&
				!c.Certstore.TrustOnFirstUse && c.Certstore.MaxMessageAge == DefaultMaxMessageAge
		}, nil},
		{"paths", "version: 1\ncredential: acme\nid: acme.example\nkeystore:\n  dir: ~/keys\n  password_file: pw\ncertstore:\n  dir: /srv/partners\n  roots: ca.pem\n  max_message_age: 2h\n",
			func(c *Config) bool {
				return c.ID == "acme.example" && c.Keystore.Dir == filepath.Join(home, "keys") && c.Keystore.PasswordEnv == "" &&
					c.Keystore.PasswordFile == "/etc/e2s/pw" && c.Certstore.Dir == "/srv/partners" &&
					c.Certstore.Roots == "/etc/e2s/ca.pem" && c.Certstore.MaxMessageAge == 2*time.Hour
			}, nil},
		{"pkcs11", "version: 1\ncredential: acme\nkeystore:\n  pkcs11: {module: /m.so, token: t, pin_file: pin}\n", func(c *Config) bool {
			return c.Keystore.Dir == "" && c.Keystore.PKCS11.PINFile == "/etc/e2s/pin"
		}, nil},
		{"pkcs11 and dir", "version: 1\ncredential: acme\nkeystore:\n  dir: k\n  pkcs11: {module: /m.so, token: t, pin_env: P}\n", nil, ErrConfig},
		{"pkcs11 without pin", "version: 1\ncredential: acme\nkeystore:\n  pkcs11: {module: /m.so, token: t}\n", nil, ErrConfig},
		{"unknown nested key", "version: 1\ncredential: acme\ncertstore:\n  trust_on_first_us: true\n", nil, ErrConfig},
		{"version 2", "version: 2\ncredential: acme\n", nil, ErrConfig},
		{"negative age", "version: 1\ncredential: acme\ncertstore:\n  max_message_age: -1h\n", nil, ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.yaml), "/etc/e2s")
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

func TestInitConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e2s", "e2s.yaml")
	c, err := InitConfig(path, "acme-buyer", true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Credential != "acme-buyer" || c.ID != "acme-buyer" || c.Keystore.PasswordEnv != DefaultPasswordEnv || !c.Certstore.TrustOnFirstUse ||
		c.Keystore.Dir != filepath.Join(filepath.Dir(path), "keystore") || c.Certstore.Dir != filepath.Join(filepath.Dir(path), "certstore") {
		t.Fatalf("config = %+v", c)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v %v", fi, err)
	}
	if _, err := InitConfig(path, "other", false); !errors.Is(err, ErrConfigExists) {
		t.Fatalf("second init: %v", err)
	}
	if c, err := LoadConfig(path); err != nil || c.Credential != "acme-buyer" {
		t.Fatalf("overwritten: %+v %v", c, err)
	}
	if _, err := InitConfig(filepath.Join(t.TempDir(), "x.yaml"), "a/b", false); !errors.Is(err, ErrUsage) {
		t.Fatalf("bad label: %v", err)
	}
}
