package gateagent

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/e2sgate/e2sgate/compartments/label"
	"github.com/e2sgate/e2sgate/filters"
)

// Registration is one registered script: where it goes and what it accepts.
type Registration struct {
	Script          string        `yaml:"-"`
	Target          string        `yaml:"target"`
	Handler         string        `yaml:"handler"`
	Methods         []string      `yaml:"methods"`
	ContentTypes    []string      `yaml:"content_types"`
	MaxBody         int64         `yaml:"max_body"`
	Callers         []string      `yaml:"callers"`
	Clearance       string        `yaml:"clearance"`
	Roles           []string      `yaml:"roles"`
	Filters         []string      `yaml:"filters"`
	ResponseFilters []string      `yaml:"response_filters"`
	Timeout         time.Duration `yaml:"timeout"`
	// MaxRate bounds each caller's calls of this script per second (a
	// second's worth at once), beneath its budget for all scripts; 0: only
	// that budget (limiter.go).
	MaxRate float64 `yaml:"max_rate"`

	chain []filters.Request // method, content type, size, then the named ones
	resp  []namedResponse
}

type namedResponse struct {
	name string
	f    filters.Response
}

// Registry maps script names to registrations.
type Registry struct {
	Version int                      `yaml:"version"`
	Scripts map[string]*Registration `yaml:"scripts"`
}

// Lookup returns the registration of script, or nil.
func (r *Registry) Lookup(script string) *Registration { return r.Scripts[script] }

// Defaults for fields a registration leaves out.
const (
	defaultTimeout = 10 * time.Second
	maxMaxBody     = 16 << 20
)

// LoadRegistry reads and validates registry.yaml from fsys. compartments are
// the names of the compartments that exist; a registration naming any other
// is refused.
func LoadRegistry(fsys fs.FS, name string, compartments []string) (*Registry, error) {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRegistry, err)
	}
	return ParseRegistry(data, name, compartments)
}

// ParseRegistry is LoadRegistry on bytes.
func ParseRegistry(data []byte, name string, compartments []string) (*Registry, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var r Registry
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadRegistry, name, err)
	}
	if r.Version != 1 {
		return nil, fmt.Errorf("%w: %s: version %d is not supported; write version: 1", ErrBadRegistry, name, r.Version)
	}
	if len(r.Scripts) == 0 {
		return nil, fmt.Errorf("%w: %s: no scripts registered", ErrBadRegistry, name)
	}
	for script, reg := range r.Scripts {
		if reg == nil {
			return nil, fmt.Errorf("%w: %s: script %s: empty registration", ErrBadRegistry, name, script)
		}
		reg.Script = script
		if err := reg.validate(compartments); err != nil {
			return nil, fmt.Errorf("%w: %s: script %s: %v", ErrBadRegistry, name, script, err)
		}
	}
	return &r, nil
}

var httpMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (reg *Registration) validate(compartments []string) error {
	comp, handler, ok := strings.Cut(reg.Script, "/")
	if !ok || comp == "" || handler == "" || strings.Contains(handler, "/") {
		return fmt.Errorf("name must be <compartment>/<script>")
	}
	if !slices.Contains(compartments, reg.Target) {
		return fmt.Errorf("target %q is not a compartment (have %s)", reg.Target, strings.Join(compartments, ", "))
	}
	if comp != reg.Target {
		return fmt.Errorf("name says compartment %q but target is %q", comp, reg.Target)
	}
	if reg.Handler == "" {
		return fmt.Errorf("handler is empty")
	}
	if len(reg.Methods) == 0 {
		return fmt.Errorf("methods is empty")
	}
	for _, m := range reg.Methods {
		if !slices.Contains(httpMethods, m) {
			return fmt.Errorf("method %q is not one of %s", m, strings.Join(httpMethods, ", "))
		}
	}
	if reg.MaxBody < 0 || reg.MaxBody > maxMaxBody {
		return fmt.Errorf("max_body %d is outside 0..%d", reg.MaxBody, maxMaxBody)
	}
	if reg.MaxBody > 0 && len(reg.ContentTypes) == 0 {
		return fmt.Errorf("max_body allows a body but content_types is empty")
	}
	if len(reg.Callers) == 0 {
		return fmt.Errorf("callers is empty")
	}
	for _, c := range reg.Callers {
		if !slices.Contains(compartments, c) {
			return fmt.Errorf("caller %q is not a compartment", c)
		}
	}
	if _, err := label.Parse(reg.Clearance); err != nil {
		return fmt.Errorf("clearance: %v", err)
	}
	if !(reg.MaxRate >= 0 && reg.MaxRate <= 1e6) { // NaN too
		return fmt.Errorf("max_rate %g is outside 0..1e6 calls per second", reg.MaxRate)
	}
	if reg.Timeout == 0 {
		reg.Timeout = defaultTimeout
	}
	reg.chain = []filters.Request{filters.Method(reg.Methods), filters.BodySize(reg.MaxBody)}
	if len(reg.ContentTypes) > 0 {
		reg.chain = append(reg.chain, filters.ContentType(reg.ContentTypes))
	}
	for _, n := range reg.Filters {
		f, ok := filters.LookupRequest(n)
		if !ok {
			return fmt.Errorf("filter %q is unknown (have %s)", n, strings.Join(filters.Names(), ", "))
		}
		reg.chain = append(reg.chain, f)
	}
	for _, n := range reg.ResponseFilters {
		f, ok := filters.LookupResponse(n)
		if !ok {
			return fmt.Errorf("response filter %q is unknown (have %s)", n, strings.Join(filters.Names(), ", "))
		}
		reg.resp = append(reg.resp, namedResponse{n, f})
	}
	return nil
}
