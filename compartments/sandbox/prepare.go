package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// prepared is what every OCI runtime backend sets up around a compartment
// before its program runs, and removes after: the image (and its mount
// points), the network namespace with what the NetAttacher adds, the
// cgroup v2 directory, and the bundle with config.json. Only how the
// container is then run differs (runc binary, containerd).
type prepared struct {
	cfg      *Runc
	spec     Spec
	paths    runcPaths
	log      *slog.Logger
	oci      *specs.Spec
	cgroupV2 string
	attached bool
}

func (r *Runc) newPrepared(s Spec) (*prepared, error) {
	if err := s.validate(r.rootHostID()); err != nil {
		return nil, err
	}
	if s.Network.Mode == NetVeth && r.Net == nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, ErrNoNetAttacher)
	}
	return &prepared{cfg: r, spec: s, paths: r.paths(s.Name), log: r.log().With("compartment", s.Name)}, nil
}

func (pp *prepared) attachment() NetAttachment {
	return NetAttachment{Spec: pp.spec, NetnsPath: pp.paths.netns, CgroupV2: pp.cgroupV2}
}

// setup builds everything up to the OCI spec. The caller releases on error.
func (pp *prepared) setup(ctx context.Context) (err error) {
	s, r := pp.spec, pp.cfg
	rootfs := s.Rootfs
	if rootfs == "" {
		if r.ImageDir == "" {
			return fmt.Errorf("start %s: %w: no Rootfs and no ImageDir", s.Name, ErrInvalidSpec)
		}
		if rootfs, err = buildImage(r.ImageDir, s.Name, s.Binary); err != nil {
			return fmt.Errorf("start %s: %w", s.Name, err)
		}
	}
	if rootfs, err = filepath.Abs(rootfs); err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	if err := mountPoints(rootfs, s.Mounts); err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	for _, d := range []string{pp.paths.root, pp.paths.bundle, filepath.Dir(pp.paths.netns)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("start %s: %w", s.Name, err)
		}
	}

	// Network: the namespace exists, configured, before the program does.
	if err := newNetns(pp.paths.netns, s.Network.Mode != NetNone); err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return fmt.Errorf("start %s: cgroups: %w", s.Name, err)
	}
	pp.cgroupV2 = cgroupV2Dir(mounts, pp.paths.cgroups)
	if r.Net != nil {
		if pp.cgroupV2 == "" {
			return fmt.Errorf("start %s: %w: no cgroup2 hierarchy for the BPF hooks", s.Name, ErrLayerMissing)
		}
		if err := os.MkdirAll(pp.cgroupV2, 0o755); err != nil {
			return fmt.Errorf("start %s: %w", s.Name, err)
		}
		pp.attached = true
		if err := r.Net.Attach(ctx, pp.attachment()); err != nil {
			return fmt.Errorf("start %s: network: %w", s.Name, err)
		}
	}

	pp.oci, err = ociSpec(s, ociOptions{Rootfs: rootfs, NetnsPath: pp.paths.netns, CgroupsPath: pp.paths.cgroups, RootHostID: r.rootHostID(), NoSwapLimit: noSwapAccounting(mounts), SeccompListener: r.SeccompListener})
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(pp.oci, "", "\t")
	if err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	if err := os.WriteFile(filepath.Join(pp.paths.bundle, "config.json"), b, 0o600); err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	return nil
}

// release removes what setup made (or a crashed supervisor left): network
// attachment, network namespace, cgroup directories, bundle. The container
// must be gone already.
func (pp *prepared) release() error {
	var errs []error
	if pp.cfg.Net != nil {
		if err := pp.cfg.Net.Detach(pp.attachment()); err != nil {
			errs = append(errs, fmt.Errorf("network detach: %w", err))
		}
	}
	if err := removeNetns(pp.paths.netns); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroups(pp.paths.cgroups); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(pp.paths.bundle); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// layers lists the confinement a prepared compartment gets.
func (pp *prepared) layers() []string {
	l := []string{"userns", "pidns", "mntns", "ipcns", "utsns", "netns", "cgroupns",
		"uid:" + fmt.Sprint(pp.spec.UID), "readonly-root", "no-caps", "no-new-privs",
		"seccomp", "cgroup-limits", "landlock-rules", "net:" + string(pp.spec.Network.Mode)}
	l = append(l, pp.cfg.DenialReports...)
	if pp.attached {
		if la, ok := pp.cfg.Net.(interface{ Layers() []string }); ok {
			l = append(l, la.Layers()...)
		} else {
			l = append(l, "net-attacher")
		}
	}
	return l
}
