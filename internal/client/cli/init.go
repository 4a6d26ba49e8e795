package cli

import (
	"flag"
	"os/user"

	"github.com/e2sgate/e2sgate/internal/client"
)

// cmdInit writes a default configuration, so that keygen can follow.
func cmdInit(fs *flag.FlagSet) func(*env, []string) error {
	label := fs.String("label", defaultLabel(), "credential `label`: names your key in the keystore and your certificate (CN)")
	tofu := fs.Bool("trust-on-first-use", false, "accept a partner's self-signed certificate on its first exchange (compare fingerprints out of band)")
	return func(e *env, _ []string) error {
		cfg, err := client.InitConfig(e.global.config, *label, *tofu)
		if err != nil {
			return err
		}
		e.printf("wrote %s: credential %s, keystore %s, certstore %s\n", cfg.Path, cfg.Credential, cfg.Keystore.Dir, cfg.Certstore.Dir)
		e.printf("the keystore password comes from $%s: export %s=... before every e2s command (or set keystore.password_file)\n",
			cfg.Keystore.PasswordEnv, cfg.Keystore.PasswordEnv)
		e.printf("next: 'e2s keygen'\n")
		return nil
	}
}

// defaultLabel is the login name when it is a valid label, else "e2s".
func defaultLabel() string {
	u, err := user.Current()
	if err != nil {
		return "e2s"
	}
	for _, r := range u.Username {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return "e2s"
		}
	}
	if u.Username == "" || u.Username[0] == '.' || len(u.Username) > 64 {
		return "e2s"
	}
	return u.Username
}
