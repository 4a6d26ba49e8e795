// Command mkimage builds the compartment images for `make images`:
//
//	go run ./images/cmd/mkimage -out DIR [-names outside,inside,...]
//
// It compiles each declared compartment's program (./cmd/NAME, see
// compartments/manifest) as a static binary (CGO_ENABLED=0) and calls
// images.Build. By default it builds every declared compartment.
//
//	go run ./images/cmd/mkimage -programs
//
// prints the declared compartments' programs, one a line, and builds
// nothing (the VM image installs these, images/vm/build.sh).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/e2sgate/e2sgate/compartments/builtins"
	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/images"
)

func main() {
	out := flag.String("out", "build/images", "directory to write images to")
	names := flag.String("names", strings.Join(manifest.Names(), ","), "comma-separated compartments to build")
	programs := flag.Bool("programs", false, "print the declared compartments' programs (cmd/NAME), one a line, and build nothing")
	flag.Parse()
	if *programs {
		for _, n := range manifest.Names() {
			fmt.Println(filepath.Base(manifest.Lookup(n).Program()))
		}
		return
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(context.Background(), *out, strings.Split(*names, ",")); err != nil {
		log.Error("mkimage", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out string, names []string) error {
	bin, err := os.MkdirTemp("", "mkimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	for _, name := range names {
		m := manifest.Lookup(name)
		if m == nil {
			return fmt.Errorf("%q is not a compartment (have %s)", name, strings.Join(manifest.Names(), ", "))
		}
		pkg := "./" + m.Program()
		exe := filepath.Join(bin, name)
		if err := images.CompileStatic(ctx, pkg, exe); err != nil {
			return err
		}
		rootfs, err := images.Build(out, name, exe)
		if err != nil {
			return err
		}
		fmt.Println(rootfs)
	}
	return nil
}
