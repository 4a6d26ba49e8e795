package cli

import (
	"flag"
	"fmt"
	"os"

	"github.com/e2sgate/e2sgate/internal/client"
	"github.com/e2sgate/e2sgate/internal/client/buy"
	"github.com/e2sgate/e2sgate/internal/document/certstore"
)

// cmdBuy parses e2s buy's flags and runs one step of the purchasing
// protocol (package buy).
func cmdBuy(fs *flag.FlagSet) func(*env, []string) error {
	o := buy.Options{}
	var list bool
	var order, resume, cardEnv string
	fs.StringVar(&o.URL, "url", os.Getenv("E2S_URL"), "the appliance's `URL` (default $E2S_URL)")
	fs.StringVar(&o.CACert, "cacert", "", "trust the appliance's TLS certificate in this PEM `file` (default: system roots)")
	fs.StringVar(&o.Merchant, "merchant", "merchant", "the merchant's partner `id` in the certstore")
	fs.StringVar(&o.Items, "items", "", "the basket: `SKU=QTY,...`")
	fs.BoolVar(&list, "list", false, "print your organisation's catalogue (prices, what you may buy) and stop")
	fs.StringVar(&cardEnv, "card-env", "E2S_CARD", "environment `variable` holding the card: \"PAN MM/YY\"")
	fs.Int64Var(&o.MaxCents, "max", 0, "refuse an offer above this many `cents` gross (0: no bound)")
	fs.StringVar(&order, "order", "", "continue with this accepted `order`: fetch and open the delivery, acknowledge it")
	fs.StringVar(&resume, "resume", "", "send the saved acceptance `file` (acceptance-ID.p7m) again: after a failure, the same order, never a second charge")
	fs.IntVar(&o.Retries, "retries", 3, "resend the acceptance this many `times` when payment or the network is unavailable")
	fs.DurationVar(&o.Wait, "wait", 0, "how long to wait for the delivery (0: do not wait)")
	fs.StringVar(&o.Out, "out", ".", "`directory` for offer, contract, delivery, document and acknowledgement")
	return func(e *env, _ []string) error {
		if o.URL == "" {
			return fmt.Errorf("-url is required: %w", client.ErrUsage)
		}
		n := 0
		if list {
			n++
		}
		for _, v := range []string{o.Items, order, resume} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("give one of -list, -items (a new purchase), -resume (its acceptance again) or -order (its delivery): %w", client.ErrUsage)
		}
		o.Card, o.CardEnv = os.Getenv(cardEnv), cardEnv
		if e.global.config != client.DefaultConfigPath() {
			o.Config = e.global.config
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		cred, err := c.Credential() // the client closes its keystore (a token logs out) when e2s ends
		if err != nil {
			return err
		}
		store, err := certstore.Open(c.Config().Certstore.Dir)
		if err != nil {
			return fmt.Errorf("open certstore: %w", err)
		}
		b, err := buy.New(o, cred, store, e.stdout, e.log)
		if err != nil {
			return err
		}
		switch {
		case list:
			_, err := b.Catalogue(e.ctx, true)
			return err
		case order != "":
			return b.Receive(e.ctx, order)
		}
		var id string
		if resume != "" {
			id, err = b.Resume(e.ctx, resume)
		} else {
			id, err = b.Purchase(e.ctx)
		}
		if err != nil {
			return err
		}
		if o.Wait == 0 {
			e.printf("delivery follows once the merchant's back office confirms it; then run:\n  %s\n", b.FollowUp(id))
			return nil
		}
		return b.Receive(e.ctx, id)
	}
}
