// Package cli is the e2s command line: it finds the command, parses its
// flags and arguments, and calls the client (package client) or the buyer
// (package buy). cmd/e2s is a thin main around Run.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/e2sgate/e2sgate/internal/client"
	"github.com/e2sgate/e2sgate/internal/client/buy"
)

// Run runs e2s with args (without the program name), writing results to
// stdout and the log (JSON, with -v) to stderr. A usage error wraps
// client.ErrUsage; Report prints any error with what to do next.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	g := globalFlags{config: client.DefaultConfigPath()}
	fs := flag.NewFlagSet("e2s", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr) }
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%v: %w", err, client.ErrUsage)
	}
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	return run(ctx, &env{log: log, global: &g, stdout: stdout, stderr: stderr}, fs.Args())
}

// Report prints err and, on a line starting "e2s: next:", what to do, and
// returns the exit status: 0 without an error, 2 for a usage error, else 1.
func Report(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "e2s: %v\n", err)
	if h := Hint(err); h != "" {
		fmt.Fprintf(stderr, "e2s: next: %s\n", h)
	}
	if errors.Is(err, client.ErrUsage) {
		return 2
	}
	return 1
}

// Hint says what to do after err: the buyer's hints first (they know the
// merchant's error codes), then the client's.
func Hint(err error) string {
	if h := buy.Hint(err); h != "" {
		return h
	}
	return client.Hint(err)
}

// globalFlags are accepted before the command and by every command.
type globalFlags struct {
	config  string
	verbose bool
}

func (g *globalFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.config, "config", g.config, "configuration `file`")
	fs.BoolVar(&g.verbose, "v", g.verbose, "log what is done (JSON on stderr)")
}

// env is what every command gets.
type env struct {
	ctx            context.Context
	log            *slog.Logger
	global         *globalFlags
	stdout, stderr io.Writer
	c              *client.Client
}

// client loads the configuration and returns the client, once.
func (e *env) client() (*client.Client, error) {
	if e.c != nil {
		return e.c, nil
	}
	cfg, err := client.LoadConfig(e.global.config)
	if err != nil {
		return nil, err
	}
	e.c = client.New(cfg, e.log)
	return e.c, nil
}

func (e *env) printf(format string, args ...any) { fmt.Fprintf(e.stdout, format, args...) }

// progress reports long work on stderr when it is a terminal and quiet is
// not set; otherwise nil (silent).
func (e *env) progress(verb string, quiet bool) *client.Progress {
	f, ok := e.stderr.(*os.File)
	if quiet || !ok {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return &client.Progress{W: e.stderr, Verb: verb}
}

// command is one subcommand.
type command struct {
	name  string // "protect", "exchange request"
	args  string // synopsis of flags and arguments
	help  string
	nargs int // positional arguments; -1: the command checks them
	flags func(fs *flag.FlagSet) func(e *env, args []string) error
}

var commands = []command{
	{"init", "[-label L] [-trust-on-first-use]", "write a default configuration file (-config, default " + client.DefaultConfigPath() + ") for credential L", 0, cmdInit},
	{"keygen", "[-label L] [-type rsa-3072|ecdsa-p256|...]", "make a key and self-signed certificate in the keystore", 0, cmdKeygen},
	{"cert export", "[-out FILE]", "print (or write) your certificate as PEM, to give to partners", 0, cmdCertExport},
	{"keystore list", "", "list the credentials in the keystore", 0, cmdKeystoreList},
	{"keystore import", "-label L [-password-env VAR] FILE.p12", "import a key and chain from a PKCS#12 file (password in $VAR, default: the keystore's)", 1, cmdKeystoreImport},
	{"protect", "-to PARTNER [-ack] [-cipher aes-256-gcm|aes-256-cbc] [-compress auto|on|off] [-openssl] [-keep SIGNED] [-force] [-q] IN OUT", "compress (if it pays), sign and encrypt IN for PARTNER, streaming (-ack requests a signed receipt; -openssl nests for openssl cms)", 2, cmdProtect},
	{"open", "[-from PARTNER] [-ack-out ACK] [-name NAME] [-max-size SIZE] [-force] [-q] IN OUT", "decrypt, verify and decompress IN (DER, PEM or S/MIME), streaming; -ack-out writes the signed file acknowledgement", 2, cmdOpen},
	{"verify-ack", "-original PROTECTED ACK", "check that ACK acknowledges exactly the document in PROTECTED (a file you protected)", 1, cmdVerifyAck},
	{"keystore init", "[-label L] [-type rsa-3072|ecdsa-p256|...]", "same as keygen: make the credential the config names", 0, cmdKeygen},
	{"keystore export-cert", "[-out FILE]", "same as cert export", 0, cmdCertExport},
	{"sign", "--detached --header FILE", "same as sign-header (the only signing mode apart from protect)", 1, cmdSign},
	{"sign-header", "FILE", "print the header signature value over FILE (detached CMS, SHA-512, no certificates, base64)", 1, cmdSignHeader},
	{"verify-header", "-from PARTNER FILE VALUE", "check a header signature VALUE over FILE against PARTNER's certificate", 2, cmdVerifyHeader},
	{"seal", "[-key PUBKEY.pem] (IN OUT | -trisa IDENTITY.json TRANSACTION.json OUT)", "seal in a TRISA sealed envelope for an RSA public key (default: your own): raw IN for records at rest (a TRISA peer refuses it); -trisa for a TRISA peer (IVMS101 identity, transaction, sent_at)", -1, cmdSeal},
	{"unseal", "(IN OUT | -trisa IN)", "open a sealed envelope with your RSA key; -trisa prints the TRISA identity and transaction as JSON", -1, cmdUnseal},
	{"exchange request", "-to PARTNER OUT", "write a signed certificate exchange request for PARTNER", 1, cmdExchangeRequest},
	{"exchange respond", "IN OUT", "store the requester's certificate and write your signed answer", 2, cmdExchangeRespond},
	{"exchange complete", "-request REQ ANSWER", "store the partner's certificate from the answer to your request REQ", 1, cmdExchangeComplete},
	{"certstore list", "", "list partner certificates", 0, cmdCertstoreList},
	{"certstore add", "PARTNER CERT.pem", "store a partner's certificate obtained out of band", 2, cmdCertstoreAdd},
	{"certstore revoke", "[-reason TEXT] PARTNER", "mark a partner's certificate revoked", 1, cmdCertstoreRevoke},
	{"buy", "-url URL (-list | -items SKU=QTY,... | -resume ACCEPTANCE | -order ID) [-cacert PEM] [-merchant PARTNER] [-card-env VAR] [-max CENTS] [-wait D] [-out DIR]", "buy from the appliance: signed offer, acceptance, contract; then delivery and acknowledgement (see cmd/e2s/README.md)", 0, cmdBuy},
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: e2s [-config FILE] [-v] COMMAND [flags] ARGS\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  e2s %s %s\n        %s\n", c.name, c.args, c.help)
	}
	fmt.Fprintf(w, "\nThe configuration file defaults to %s; see cmd/e2s/README.md.\n", client.DefaultConfigPath())
}

// run finds the command (one or two words), parses its flags and
// arguments (flags may follow arguments) and runs it.
func run(ctx context.Context, e *env, args []string) error {
	e.ctx = ctx
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" {
		usage(e.stdout)
		if len(args) == 0 {
			return fmt.Errorf("no command: %w", client.ErrUsage)
		}
		return nil
	}
	var cmd *command
	n := 1
	for i := range commands {
		c := &commands[i]
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			cmd, n = c, len(words)
			break
		}
	}
	if cmd == nil {
		return fmt.Errorf("unknown command %q: %w", strings.Join(args[:min(2, len(args))], " "), client.ErrUsage)
	}
	fs := flag.NewFlagSet("e2s "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: e2s %s %s\n  %s\n", cmd.name, cmd.args, cmd.help)
		fs.PrintDefaults()
	}
	e.global.register(fs)
	do := cmd.flags(fs)
	pos, err := parseInterspersed(fs, args[n:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %v: %w", cmd.name, err, client.ErrUsage)
	}
	if cmd.nargs >= 0 && len(pos) != cmd.nargs {
		return fmt.Errorf("e2s %s %s: want %d arguments, got %d: %w", cmd.name, cmd.args, cmd.nargs, len(pos), client.ErrUsage)
	}
	defer func() {
		if e.c != nil {
			e.c.Close()
		}
	}()
	return do(e, pos)
}

// parseInterspersed parses flags wherever they are among the arguments,
// so "e2s open IN OUT -ack-out ACK" works as the synopsis reads.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}
