package sandbox

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/e2sgate/e2sgate/compartments/sandbox/landlock"
	"github.com/e2sgate/e2sgate/images"
)

// LandlockRules returns the Landlock rules of compartment s as seen inside
// its image: read-only its own program, /etc (config, CA roots, hosts) and
// the harmless devices; read-write its private /tmp and its writable mounts;
// read-only its other mounts; TCP connect to the ports of Network.Allow;
// plus whatever s.Landlock adds.
func (s Spec) LandlockRules() landlock.Rules {
	r := landlock.Rules{
		ReadOnly:  []string{images.BinaryPath(s.Name), "/etc", "/dev/urandom", "/dev/random"},
		ReadWrite: []string{"/tmp", "/dev/null", "/dev/zero"},
	}
	for _, m := range s.Mounts {
		t := cmp.Or(m.Target, m.Source)
		if m.Writable {
			r.ReadWrite = append(r.ReadWrite, t)
		} else {
			r.ReadOnly = append(r.ReadOnly, t)
		}
	}
	for _, e := range s.Network.Allow {
		if e.Port == 0 {
			r.ConnectAnyPort = true
			continue
		}
		r.ConnectTCP = append(r.ConnectTCP, e.Port)
	}
	r.ReadOnly = append(r.ReadOnly, s.Landlock.ReadOnly...)
	r.ReadWrite = append(r.ReadWrite, s.Landlock.ReadWrite...)
	r.ConnectTCP = append(r.ConnectTCP, s.Landlock.ConnectTCP...)
	r.BindTCP = append(r.BindTCP, s.Landlock.BindTCP...)
	r.ConnectAnyPort = r.ConnectAnyPort || s.Landlock.ConnectAnyPort
	for _, l := range []*[]string{&r.ReadOnly, &r.ReadWrite} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
	for _, l := range []*[]uint16{&r.ConnectTCP, &r.BindTCP} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
	return r
}

// LandlockEnv returns the "E2SGATE_LANDLOCK=..." environment entry carrying
// s.LandlockRules(). The runc runtime adds it itself; a supervisor using
// another runtime appends it to Spec.Env.
func (s Spec) LandlockEnv() (string, error) {
	env, err := s.LandlockRules().Env()
	if err != nil {
		return "", fmt.Errorf("landlock rules of %s: %w", s.Name, err)
	}
	return env, nil
}

func hasEnv(env []string, name string) bool {
	return slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, name+"=") })
}
