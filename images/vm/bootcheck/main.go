// Command bootcheck decides whether a newly updated image came up: it waits
// until e2sgated's status.json lists every compartment (and the gate agent)
// running, then exits 0. It runs only on a trial boot of an update (the
// boot loader counts tries, see images/vm/update.sh), before
// boot-complete.target: success lets systemd-bless-boot mark the image
// good; failure or the timeout reboots, and after its tries the boot
// loader goes back to the image that last came up.
//
//	bootcheck -status /run/e2sgate/status.json -config /etc/e2sgate/e2sgate.yaml -timeout 14m
//
// An appliance without a configuration (no seed yet) has nothing to judge
// beyond having booted: that counts as up.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"
)

func main() {
	status := flag.String("status", "/run/e2sgate/status.json", "e2sgated's status file")
	config := flag.String("config", "/etc/e2sgate/e2sgate.yaml", "the appliance's config; without it there is nothing to check")
	timeout := flag.Duration("timeout", 14*time.Minute, "how long the appliance may take to come up")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if _, err := os.Stat(*config); errors.Is(err, os.ErrNotExist) {
		log.Warn("no configuration: the image booted, nothing more to check", "config", *config)
		return
	}
	if err := Wait(ctx, *status, time.Second); err != nil {
		log.Error("the updated image did not come up; rebooting, the boot loader falls back after its tries", "err", err,
			"next", "read the console and journal of this boot; fix and apply a new image with update.sh")
		os.Exit(1)
	}
	log.Info("the appliance is up: this image is good")
}

// Wait polls status until every compartment runs or ctx ends; the error
// says what was not running.
func Wait(ctx context.Context, status string, every time.Duration) error {
	for {
		err := Up(status)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

// Up reads status.json and returns nil when it lists at least one
// compartment and every compartment and the gate agent are running.
func Up(status string) error {
	b, err := os.ReadFile(status)
	if err != nil {
		return fmt.Errorf("e2sgated has not written its status: %w", err)
	}
	var st struct {
		Gate *struct {
			State string `json:"state"`
		} `json:"gate"`
		Compartments map[string]*struct {
			State string `json:"state"`
		} `json:"compartments"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("read %s: %w", status, err)
	}
	if len(st.Compartments) == 0 {
		return fmt.Errorf("%s lists no compartment", status)
	}
	var down []string
	for name, c := range st.Compartments {
		if c == nil || c.State != "running" {
			down = append(down, name)
		}
	}
	if st.Gate != nil && st.Gate.State != "running" {
		down = append(down, "gate")
	}
	if len(down) > 0 {
		sort.Strings(down)
		return fmt.Errorf("not running: %s", strings.Join(down, ", "))
	}
	return nil
}
