package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPaymentAndBackOffice(t *testing.T) {
	c := Default()
	if err := Parse(c, []byte("version: 1\npayment:\n  acquirer: 10.77.0.10:8583\n  acquirer_cert: /etc/e2sgate/acquirer.pem\n  timeout: 3s\nback_office:\n  spool_dir: /srv/spool\n")); err != nil {
		t.Fatal(err)
	}
	if c.Payment.Acquirer != "10.77.0.10:8583" || c.Payment.Timeout != 3*time.Second || c.BackOffice.SpoolDir != "/srv/spool" {
		t.Fatalf("parsed %+v %+v", c.Payment, c.BackOffice)
	}
	if d := Default(); d.Payment.Acquirer != "" || d.Payment.Timeout != 10*time.Second || d.Validate() != nil {
		t.Fatalf("defaults %+v", d.Payment)
	}
	for field, yaml := range map[string]string{
		"payment.acquirer":      "payment:\n  acquirer: acquirer.example:8583\n  acquirer_cert: /a.pem\n",
		"payment.acquirer_cert": "payment:\n  acquirer: 10.77.0.10:8583\n",
		"payment.timeout":       "payment:\n  timeout: 0s\n",
		"back_office.spool_dir": "back_office:\n  spool_dir: spool\n",
	} {
		err := Parse(Default(), []byte("version: 1\n"+yaml))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}
