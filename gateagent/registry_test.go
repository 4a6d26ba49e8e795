package gateagent

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/e2sgate/e2sgate/policies"
)

var comps = []string{"outside", "purchasing", "payment", "keyhandler", "inside"}

func TestEmbeddedRegistryLoads(t *testing.T) {
	r, err := LoadRegistry(policies.Default, "registry.yaml", comps)
	if err != nil {
		t.Fatal(err)
	}
	if r.Lookup("purchasing/offer") == nil || r.Lookup("purchasing/nosuch") != nil {
		t.Fatal("lookup wrong")
	}
}

const goodEntry = `version: 1
scripts:
  purchasing/catalogue:
    target: purchasing
    handler: catalogue
    methods: [GET]
    callers: [outside]
    clearance: unclassified
`

func TestBadRegistryRefused(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", goodEntry + "    colour: blue\n", "colour"},
		{"unknown target", strings.Replace(goodEntry, "target: purchasing", "target: purchasng", 1), `target "purchasng" is not a compartment`},
		{"name and target disagree", strings.Replace(goodEntry, "target: purchasing", "target: payment", 1), "name says compartment"},
		{"no handler", strings.Replace(goodEntry, "handler: catalogue", "handler: \"\"", 1), "handler is empty"},
		{"bad method", strings.Replace(goodEntry, "[GET]", "[FETCH]", 1), `method "FETCH"`},
		{"no callers", strings.Replace(goodEntry, "[outside]", "[]", 1), "callers is empty"},
		{"unknown caller", strings.Replace(goodEntry, "[outside]", "[mallory]", 1), `caller "mallory"`},
		{"bad clearance", strings.Replace(goodEntry, "unclassified", "cosmic", 1), "clearance"},
		{"body without types", goodEntry + "    max_body: 10\n", "content_types is empty"},
		{"unknown filter", goodEntry + "    filters: [virus_scan]\n", `filter "virus_scan" is unknown`},
		{"bad version", strings.Replace(goodEntry, "version: 1", "version: 7", 1), "version 7"},
		{"empty", "version: 1\n", "no scripts"},
		{"bad name", strings.Replace(goodEntry, "purchasing/catalogue:", "catalogue:", 1), "<compartment>/<script>"},
		{"not yaml", "version: [", "registry.yaml"},
		{"negative max_rate", goodEntry + "    max_rate: -1\n", "max_rate"},
		{"max_rate not a number", goodEntry + "    max_rate: .nan\n", "max_rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadRegistry(fstest.MapFS{"registry.yaml": {Data: []byte(tt.yaml)}}, "registry.yaml", comps)
			if !errors.Is(err, ErrBadRegistry) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrBadRegistry containing %q", err, tt.want)
			}
		})
	}
	if _, err := LoadRegistry(fstest.MapFS{"registry.yaml": {Data: []byte(goodEntry)}}, "registry.yaml", comps); err != nil {
		t.Fatalf("good registry refused: %v", err)
	}
}
