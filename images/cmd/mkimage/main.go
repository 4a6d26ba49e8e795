// Command mkimage builds the compartment images for `make images`:
//
//	go run ./images/cmd/mkimage -out DIR [-names outside,inside,...]
//
// It compiles each ./cmd/NAME as a static binary (CGO_ENABLED=0) and calls
// images.Build. Compartments whose ./cmd/NAME does not exist yet are skipped
// with a warning.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/e2sgate/e2sgate/images"
)

func main() {
	out := flag.String("out", "build/images", "directory to write images to")
	names := flag.String("names", strings.Join(images.Compartments, ","), "comma-separated compartments to build")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(context.Background(), log, *out, strings.Split(*names, ",")); err != nil {
		log.Error("mkimage", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, out string, names []string) error {
	bin, err := os.MkdirTemp("", "mkimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	for _, name := range names {
		pkg := "./cmd/" + name
		if _, err := os.Stat(filepath.Join("cmd", name)); err != nil {
			log.Warn("no program for compartment, skipped", "compartment", name, "pkg", pkg)
			continue
		}
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
