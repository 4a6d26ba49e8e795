package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/e2sgate/e2sgate/internal/client"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

func required(name, value string) error {
	if value == "" {
		return fmt.Errorf("-%s is required: %w", name, client.ErrUsage)
	}
	return nil
}

func cmdKeygen(fs *flag.FlagSet) func(*env, []string) error {
	label := fs.String("label", "", "credential `label` (default: the config's credential)")
	typ := fs.String("type", "rsa-3072", "key `type`: rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384")
	return func(e *env, _ []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		k, err := c.Keygen(*label, *typ)
		if err != nil {
			return err
		}
		e.printf("generated %s (%s), self-signed certificate %s valid until %s\nfingerprint SHA-256 %s\n",
			k.Label, *typ, k.Subject, k.NotAfter.Format(time.DateOnly), k.Fingerprint)
		if !k.Configured {
			e.printf("note: the config's credential is %q; set credential: %s to use this key\n", c.Config().Credential, k.Label)
		}
		e.printf("next: 'e2s exchange request -to PARTNER FILE', or give partners 'e2s cert export'\n")
		return nil
	}
}

func cmdCertExport(fs *flag.FlagSet) func(*env, []string) error {
	out := fs.String("out", "", "write to `file` instead of standard output")
	return func(e *env, _ []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		pem, err := c.ExportCert()
		if err != nil {
			return err
		}
		if *out == "" {
			_, err = e.stdout.Write(pem)
			return err
		}
		return os.WriteFile(*out, pem, 0o644)
	}
}

func cmdKeystoreList(fs *flag.FlagSet) func(*env, []string) error {
	return func(e *env, _ []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		keys, err := c.ListKeys()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LABEL\tKEY\tSUBJECT\tNOT AFTER\tSHA-256")
		for _, k := range keys {
			mark := ""
			if k.Configured {
				mark = " *"
			}
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", k.Label, mark, k.KeyType, k.Subject, k.NotAfter.Format(time.DateOnly), k.Fingerprint)
		}
		return tw.Flush()
	}
}

func cmdProtect(fs *flag.FlagSet) func(*env, []string) error {
	to := fs.String("to", "", "recipient partner `id` (from the certstore)")
	ack := fs.Bool("ack", false, "request a signed receipt (RFC 2634)")
	cipher := fs.String("cipher", "aes-256-gcm", "content encryption: aes-256-gcm, or aes-256-cbc for older peers (openssl <= 3.0.19)")
	keep := fs.String("keep", "", "also write the inner SignedData (signed, not encrypted) to `file`, for verify-ack")
	compress := fs.String("compress", "", "compression: auto (only if a sample compresses), on, off (default auto; off with -openssl)")
	openssl := fs.Bool("openssl", false, "nest as openssl does, so that 'openssl cms -decrypt | openssl cms -verify' reads the file (see cmd/e2s/README.md)")
	force := fs.Bool("force", false, "replace OUT (and -keep) if it exists")
	quiet := fs.Bool("q", false, "no progress on the terminal")
	return func(e *env, args []string) error {
		if err := required("to", *to); err != nil {
			return err
		}
		var cph cms.Cipher
		switch *cipher {
		case "aes-256-gcm":
			cph = cms.AES256GCM
		case "aes-256-cbc":
			cph = cms.AES256CBC
		default:
			return fmt.Errorf("-cipher %q: aes-256-gcm or aes-256-cbc: %w", *cipher, client.ErrUsage)
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		comp := *compress
		if comp == "" && *openssl {
			comp = "off" // openssl as Debian builds it has no zlib
		}
		r, err := c.Protect(e.ctx, args[0], args[1], client.ProtectOptions{To: *to, Ack: *ack, Cipher: cph, Keep: *keep,
			Compress: comp, OpenSSL: *openssl, Force: *force, Progress: e.progress("protect", *quiet)})
		if err != nil {
			return err
		}
		how := *cipher
		if r.Compressed {
			how += ", compressed"
		}
		if *openssl {
			how += ", openssl nesting"
		}
		e.printf("protected %s (%d bytes) for %s: %s (%d bytes, %s)\n", args[0], r.Size, r.To, args[1], r.Written, how)
		if r.ReceiptAsk {
			e.printf("signed receipt requested; check it with 'e2s verify-ack -original %s ACK'\n", args[1])
		} else {
			e.printf("keep %s to check the acknowledgement with 'e2s verify-ack -original %s ACK'\n", args[1], args[1])
		}
		return nil
	}
}

func cmdOpen(fs *flag.FlagSet) func(*env, []string) error {
	from := fs.String("from", "", "require the document to be signed by this partner `id`")
	ackOut := fs.String("ack-out", "", "write the signed file acknowledgement to `file`")
	name := fs.String("name", "", "file `name` stated in the acknowledgement (default: OUT's base name)")
	force := fs.Bool("force", false, "replace OUT (and -ack-out) if it exists")
	maxSize := fs.String("max-size", "64G", "refuse documents larger than `size` (bytes, or with K, M, G, T)")
	quiet := fs.Bool("q", false, "no progress on the terminal")
	return func(e *env, args []string) error {
		max, err := parseSize(*maxSize)
		if err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		r, err := c.Open(e.ctx, args[0], args[1], client.OpenOptions{From: *from, AckOut: *ackOut, FileName: *name,
			Force: *force, MaxSize: max, Progress: e.progress("open", *quiet)})
		if err != nil {
			return err
		}
		signed := ""
		if !r.SignedAt.IsZero() {
			signed = " at " + r.SignedAt.UTC().Format(time.RFC3339)
		}
		e.printf("opened %s: %d bytes from %s (signed%s, signature verified): %s\n", args[0], r.Size, r.From, signed, args[1])
		switch {
		case r.AckWritten:
			e.printf("acknowledgement written to %s; send it back to %s\n", *ackOut, r.From)
		case r.ReceiptAsked:
			e.printf("note: %s asked for a signed receipt; run again with -ack-out ACK and send ACK back\n", r.From)
		}
		return nil
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parseSize reads a byte count with an optional K, M, G or T (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		case 't', 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: a positive number of bytes, optionally with K, M, G or T: %w", s, client.ErrUsage)
	}
	return v * mult, nil
}

func cmdVerifyAck(fs *flag.FlagSet) func(*env, []string) error {
	original := fs.String("original", "", "the `file` you protected (or its SignedData)")
	return func(e *env, args []string) error {
		if err := required("original", *original); err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		a, err := c.VerifyAck(e.ctx, args[0], *original)
		if err != nil {
			return err
		}
		kind := "signed file acknowledgement"
		if a.ESSReceipt {
			kind = "signed receipt (RFC 2634) with file acknowledgement"
		}
		e.printf("ok: %s by %s of %s\n  file %q, %d bytes, %v %x, signed %s\n", kind, a.By, *original,
			a.FileName, a.FileSize, a.FileHash, a.FileDigest, a.SignedAt.UTC().Format(time.RFC3339))
		return nil
	}
}

func cmdSignHeader(fs *flag.FlagSet) func(*env, []string) error {
	return func(e *env, args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		v, err := c.SignHeader(args[0])
		if err != nil {
			return err
		}
		e.printf("%s\n", v)
		return nil
	}
}

// cmdSign is sign-header under the issue's spelling, `sign --detached
// --header`; attached signatures are made by protect.
func cmdSign(fs *flag.FlagSet) func(*env, []string) error {
	detached := fs.Bool("detached", false, "detached signature (required)")
	header := fs.Bool("header", false, "print it as a header value (required)")
	signHeader := cmdSignHeader(fs)
	return func(e *env, args []string) error {
		if !*detached || !*header {
			return fmt.Errorf("sign supports only --detached --header; use protect for a signed and encrypted document: %w", client.ErrUsage)
		}
		return signHeader(e, args)
	}
}

func cmdVerifyHeader(fs *flag.FlagSet) func(*env, []string) error {
	from := fs.String("from", "", "partner `id` whose registered certificate signed")
	return func(e *env, args []string) error {
		if err := required("from", *from); err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		if err := c.VerifyHeader(*from, args[0], args[1]); err != nil {
			return err
		}
		e.printf("ok: %s signed by %s\n", args[0], *from)
		return nil
	}
}

func cmdSeal(fs *flag.FlagSet) func(*env, []string) error {
	key := fs.String("key", "", "RSA public key or certificate `PEM` to seal to (default: your own credential)")
	trisa := fs.Bool("trisa", false, "seal a TRISA Payload built from IDENTITY.json (IVMS101) and TRANSACTION.json, as TRISA peers require")
	return func(e *env, args []string) error {
		if want := 2 + btoi(*trisa); len(args) != want {
			return fmt.Errorf("e2s seal: want %d arguments, got %d (raw: IN OUT; -trisa: IDENTITY.json TRANSACTION.json OUT): %w", want, len(args), client.ErrUsage)
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		if *trisa {
			r, err := c.SealTRISA(*key, args[0], args[1], args[2])
			if err != nil {
				return err
			}
			e.printf("sealed TRISA payload (identity %s, transaction %s): %s (envelope %s, key %s)\n", args[0], args[1], args[2], r.ID, r.PublicKeySignature)
			return nil
		}
		r, err := c.Seal(*key, args[0], args[1])
		if err != nil {
			return err
		}
		e.printf("sealed %s: %s (envelope %s, key %s)\n", args[0], args[1], r.ID, r.PublicKeySignature)
		return nil
	}
}

func cmdUnseal(fs *flag.FlagSet) func(*env, []string) error {
	trisa := fs.Bool("trisa", false, "print the TRISA identity and transaction as JSON (IN only)")
	return func(e *env, args []string) error {
		if want := 2 - btoi(*trisa); len(args) != want {
			return fmt.Errorf("e2s unseal: want %d arguments, got %d (raw: IN OUT; -trisa: IN): %w", want, len(args), client.ErrUsage)
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		if *trisa {
			content, _, err := c.UnsealTRISA(args[0])
			if err != nil {
				return err
			}
			out, err := json.MarshalIndent(content, "", "  ")
			if err != nil {
				return err
			}
			e.printf("%s\n", out)
			return nil
		}
		r, err := c.Unseal(args[0], args[1])
		if err != nil {
			return err
		}
		e.printf("unsealed %s (envelope %s): %s\n", args[0], r.ID, args[1])
		return nil
	}
}

func cmdExchangeRequest(fs *flag.FlagSet) func(*env, []string) error {
	to := fs.String("to", "", "partner `id` to exchange certificates with")
	return func(e *env, args []string) error {
		if err := required("to", *to); err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		if err := c.ExchangeRequest(*to, args[0]); err != nil {
			return err
		}
		e.printf("request written to %s; send it to %s, keep it, and on their answer run:\n  e2s exchange complete -request %s ANSWER\n", args[0], *to, args[0])
		return nil
	}
}

func cmdExchangeRespond(fs *flag.FlagSet) func(*env, []string) error {
	return func(e *env, args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		p, err := c.ExchangeRespond(args[0], args[1])
		if err != nil {
			return err
		}
		e.printf("stored the certificate of %s (%s)\n  SHA-256 %s\nanswer written to %s; send it back to %s\n", p.ID, p.Subject, p.Fingerprint, args[1], p.ID)
		return nil
	}
}

func cmdExchangeComplete(fs *flag.FlagSet) func(*env, []string) error {
	req := fs.String("request", "", "the request `file` you sent")
	return func(e *env, args []string) error {
		if err := required("request", *req); err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		p, err := c.ExchangeComplete(*req, args[0])
		if err != nil {
			return err
		}
		e.printf("stored the certificate of %s (%s)\n  SHA-256 %s\nnext: 'e2s protect -to %s IN OUT'\n", p.ID, p.Subject, p.Fingerprint, p.ID)
		return nil
	}
}

func cmdCertstoreList(fs *flag.FlagSet) func(*env, []string) error {
	return func(e *env, _ []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		ps, err := c.ListPartners()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTNER\tSUBJECT\tNOT AFTER\tSTATUS\tSHA-256")
		for _, p := range ps {
			status := "valid"
			if p.Revoked != "" {
				status = p.Revoked
			} else if time.Now().After(p.NotAfter) {
				status = "expired"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID, p.Subject, p.NotAfter.Format(time.DateOnly), status, p.Fingerprint)
		}
		return tw.Flush()
	}
}

func cmdCertstoreAdd(fs *flag.FlagSet) func(*env, []string) error {
	return func(e *env, args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		p, err := c.AddPartner(args[0], args[1])
		if err != nil {
			return err
		}
		e.printf("stored the certificate of %s (%s)\n  SHA-256 %s\ncompare the fingerprint with the partner's before relying on it\n", p.ID, p.Subject, p.Fingerprint)
		return nil
	}
}

func cmdCertstoreRevoke(fs *flag.FlagSet) func(*env, []string) error {
	reason := fs.String("reason", "revoked by user", "`reason` recorded with the mark")
	return func(e *env, args []string) error {
		c, err := e.client()
		if err != nil {
			return err
		}
		if err := c.RevokePartner(args[0], *reason); err != nil {
			return err
		}
		e.printf("revoked the certificate of %s: its documents, acknowledgements and header signatures are refused from now on\n", args[0])
		return nil
	}
}

func cmdKeystoreImport(fs *flag.FlagSet) func(*env, []string) error {
	label := fs.String("label", "", "credential `label` to store it under")
	pwEnv := fs.String("password-env", "", "environment `variable` holding the PKCS#12 file's password (default: the keystore's password)")
	return func(e *env, args []string) error {
		if err := required("label", *label); err != nil {
			return err
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		k, err := c.ImportPKCS12(*label, args[0], *pwEnv)
		if err != nil {
			return err
		}
		e.printf("imported %s: %s (%s) valid until %s\nfingerprint SHA-256 %s\n", k.Label, k.Subject, k.KeyType, k.NotAfter.Format(time.DateOnly), k.Fingerprint)
		return nil
	}
}
