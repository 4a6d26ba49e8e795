package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/daemon/admin/api"
)

const (
	exitOK = iota
	exitFail
	exitUsage
	exitDenied
	exitTampered
)

var errUsage = errors.New("usage")

type cli struct {
	socket string
	json   bool
	out    io.Writer
	errOut io.Writer
}

func run(args []string, out, errOut io.Writer) int {
	fl := flag.NewFlagSet("e2sctl", flag.ContinueOnError)
	fl.SetOutput(errOut)
	c := &cli{out: out, errOut: errOut}
	def := os.Getenv("E2S_ADMIN_SOCKET")
	if def == "" {
		def = "/run/e2sgate/admin.sock"
	}
	fl.StringVar(&c.socket, "socket", def, "the supervisor's admin socket")
	fl.BoolVar(&c.json, "json", false, "print answers as JSON")
	fl.Usage = func() { fmt.Fprint(errOut, usage) }
	if err := fl.Parse(args); err != nil {
		return exitUsage
	}
	code, err := c.dispatch(fl.Args())
	if errors.Is(err, errUsage) {
		fmt.Fprint(errOut, usage)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintln(errOut, "e2sctl:", err)
	}
	return code
}

func (c *cli) dispatch(a []string) (int, error) {
	if len(a) == 0 {
		return exitUsage, errUsage
	}
	cmd, rest := a[0], a[1:]
	sub := func() (string, []string, error) {
		if len(rest) == 0 {
			return "", nil, errUsage
		}
		return cmd + "." + rest[0], rest[1:], nil
	}
	switch cmd {
	case "whoami", "status", "proposals", "metrics":
		return c.call(cmd, nil)
	case "approve", "reject":
		if len(rest) != 1 {
			return exitUsage, errUsage
		}
		return c.call(cmd, map[string]string{"id": rest[0]})
	case "explain":
		if len(rest) != 1 {
			return exitUsage, errUsage
		}
		return c.call(cmd, map[string]string{"id": rest[0]})
	case "compartment":
		name, r, err := sub()
		if err != nil || len(r) != 1 {
			return exitUsage, errUsage
		}
		return c.call(name, map[string]string{"name": r[0]})
	case "audit":
		name, r, err := sub()
		if err != nil {
			return exitUsage, err
		}
		return c.audit(name, r)
	case "policy":
		name, r, err := sub()
		if err != nil {
			return exitUsage, err
		}
		name = strings.ReplaceAll(name, "-", "_")
		switch name {
		case "policy.show", "policy.rollback", "policy.shadow_report", "policy.shadow_stop":
			return c.call(name, nil)
		}
		if len(r) != 1 {
			return exitUsage, errUsage
		}
		files, err := readPolicyDir(r[0])
		if err != nil {
			return exitFail, err
		}
		return c.call(name, map[string]any{"files": files})
	case "key":
		name, r, err := sub()
		if err != nil {
			return exitUsage, err
		}
		switch name {
		case "key.show", "key.rotate":
			if len(r) != 0 {
				return exitUsage, errUsage
			}
			return c.call(name, nil)
		case "key.export-cert":
			if len(r) != 1 {
				return exitUsage, errUsage
			}
			return c.exportCert(r[0])
		}
		return exitUsage, errUsage
	case "role":
		name, r, err := sub()
		if err != nil {
			return exitUsage, err
		}
		if name == "role.list" {
			return c.call(name, nil)
		}
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		fs.SetOutput(c.errOut)
		nm := fs.String("name", "", "account name")
		if len(r) < 2 {
			return exitUsage, errUsage
		}
		if err := fs.Parse(r[2:]); err != nil {
			return exitUsage, errUsage
		}
		uid, err := strconv.Atoi(r[0])
		if err != nil {
			return exitUsage, errUsage
		}
		return c.call(name, api.RoleArgs{UID: uid, Name: *nm, Role: r[1]})
	}
	return exitUsage, errUsage
}

// readPolicyDir reads the top-level .rego and .yaml files of dir, as the
// operator, to send them to the supervisor.
func readPolicyDir(dir string) (map[string]string, error) {
	es, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("policy dir: %w", err)
	}
	files := map[string]string{}
	for _, e := range es {
		n := e.Name()
		if e.Type().IsRegular() && (strings.HasSuffix(n, ".rego") || strings.HasSuffix(n, ".yaml")) {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				return nil, fmt.Errorf("policy dir: %w", err)
			}
			files[n] = string(b)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("policy dir %s: no .rego or .yaml files", dir)
	}
	return files, nil
}

func (c *cli) audit(name string, r []string) (int, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.errOut)
	var a api.AuditArgs
	logFile := fs.String("log", "", "verify: an audit log file (offline); tail/search: gate or admin")
	pub := fs.String("pubkey", "", "verify offline: the checkpoint verifier key (audit.pub)")
	fs.StringVar(&a.Compartment, "compartment", "", "caller or target compartment")
	fs.StringVar(&a.Decision, "decision", "", "allow or deny")
	fs.StringVar(&a.User, "user", "", "user")
	fs.StringVar(&a.Script, "script", "", "script (substring)")
	fs.StringVar(&a.Reason, "reason", "", "reason id")
	fs.StringVar(&a.ReqID, "req", "", "request id")
	fs.StringVar(&a.Since, "since", "", "RFC 3339 time or a duration back (1h)")
	fs.StringVar(&a.Until, "until", "", "RFC 3339 time or a duration back")
	fs.IntVar(&a.Limit, "n", 0, "at most this many records (newest)")
	if err := fs.Parse(r); err != nil || fs.NArg() != 0 {
		return exitUsage, errUsage
	}
	switch name {
	case "audit.verify":
		if *logFile != "" {
			if *pub == "" {
				*pub = filepath.Join(filepath.Dir(*logFile), "audit.pub")
			}
			rep, err := auditlog.Verify(*logFile, *pub)
			if err != nil {
				return exitFail, err
			}
			return c.printVerify([]*auditlog.Report{rep}), nil
		}
		resp, code, err := c.request(name, nil)
		if err != nil || code != exitOK {
			return code, err
		}
		var reps []*auditlog.Report
		if err := json.Unmarshal(resp.Result, &reps); err != nil {
			return exitFail, err
		}
		return c.printVerify(reps), nil
	case "audit.tail", "audit.search":
		a.Log = *logFile
		resp, code, err := c.request(name, a)
		if err != nil || code != exitOK {
			return code, err
		}
		if c.json {
			c.out.Write(append(resp.Result, '\n'))
			return exitOK, nil
		}
		var recs []auditlog.Record
		json.Unmarshal(resp.Result, &recs)
		for _, r := range recs {
			b, _ := json.Marshal(r)
			fmt.Fprintln(c.out, string(b))
		}
		return exitOK, nil
	}
	return exitUsage, errUsage
}

func (c *cli) printVerify(reps []*auditlog.Report) int {
	code := exitOK
	for _, r := range reps {
		if c.json {
			b, _ := json.MarshalIndent(r, "", "  ")
			fmt.Fprintln(c.out, string(b))
		}
		if r.OK() {
			fmt.Fprintf(c.out, "OK %s: %d records, %d signed by %d checkpoints (last %s), %d not yet signed, root %x, verified in %s\n",
				r.Log, r.Records, r.Covered, r.Checkpoints, r.LastCheckpoint.Format("2006-01-02T15:04:05Z07:00"), r.Unsigned, r.Root, r.Duration)
			continue
		}
		code = exitTampered
		fmt.Fprintf(c.out, "FAIL %s: %d records, %d checkpoints; first bad: %s\n", r.Log, r.Records, r.Checkpoints, r.FirstBad())
		for _, p := range r.Problems {
			fmt.Fprintf(c.out, "  %s\n", p)
		}
	}
	return code
}

// request sends one command and maps the answer to an exit status.
func (c *cli) request(cmd string, args any) (*api.Response, int, error) {
	resp, err := api.Call(c.socket, cmd, args)
	if err != nil {
		return nil, exitFail, err
	}
	if !resp.OK {
		code := exitFail
		switch resp.Reason {
		case "adm.authorization_missing", "adm.no_role", "adm.unknown_command",
			"adm.same_person", "adm.proposer_lost":
			// Refused for who is asking, not for the state of things.
			code = exitDenied
		}
		return resp, code, fmt.Errorf("%s [%s]", resp.Error, resp.Reason)
	}
	return resp, exitOK, nil
}

func (c *cli) call(cmd string, args any) (int, error) {
	resp, code, err := c.request(cmd, args)
	if err != nil {
		return code, err
	}
	if resp.Proposal != nil {
		p := resp.Proposal
		if c.json {
			b, _ := json.MarshalIndent(p, "", "  ")
			fmt.Fprintln(c.out, string(b))
			return exitOK, nil
		}
		fmt.Fprintf(c.out, "proposal %s: %s\nneeds approval by a second person with %q before %s: e2sctl approve %s\n",
			p.ID, p.Summary, resp.Authorization, p.Expires.Format("2006-01-02T15:04:05Z07:00"), p.ID)
		return exitOK, nil
	}
	var v any
	if err := json.Unmarshal(resp.Result, &v); err != nil {
		return exitFail, err
	}
	if cmd == "policy.check" {
		var pc struct {
			OK bool `json:"ok"`
		}
		json.Unmarshal(resp.Result, &pc)
		if !pc.OK {
			code = exitFail
		}
	}
	if s, ok := v.(string); ok && !c.json {
		fmt.Fprintln(c.out, s)
		return code, nil
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintln(c.out, string(b))
	return code, nil
}

// exportCert writes the merchant certificate (PEM) to file, or to stdout
// for "-".
func (c *cli) exportCert(file string) (int, error) {
	resp, code, err := c.request("key.export_cert", nil)
	if err != nil || code != exitOK {
		return code, err
	}
	var p string
	if err := json.Unmarshal(resp.Result, &p); err != nil || !strings.HasPrefix(p, "-----BEGIN CERTIFICATE-----") {
		return exitFail, fmt.Errorf("the supervisor answered no certificate")
	}
	if file == "-" {
		fmt.Fprint(c.out, p)
		return exitOK, nil
	}
	if err := os.WriteFile(file, []byte(p), 0o644); err != nil {
		return exitFail, err
	}
	fmt.Fprintf(c.out, "merchant certificate written to %s\n", file)
	return exitOK, nil
}
