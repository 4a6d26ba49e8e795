package admin

import (
	"cmp"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/e2sgate/e2sgate/internal/auditlog"
)

// Explainer says what a reason id means and which rule of the active
// policy produces it; for an audit record, also the labels and filters.
type Explainer struct {
	Reasons map[string]string
	Modules func() map[string]string // Rego modules of the policy set in force
	Labels  map[string]string        // compartment → label
}

// LoadReasons reads reason-id files from fsys: one "id: text" per line,
// "#" comments (read line by line, so a colon in the text is fine); missing
// files are skipped.
func LoadReasons(fsys fs.FS, files ...string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			continue
		}
		for i, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			id, text, ok := strings.Cut(l, ": ")
			if !ok || strings.ContainsAny(id, " \t") {
				return nil, fmt.Errorf("reasons %s line %d: want \"id: text\"", f, i+1)
			}
			out[id] = strings.TrimSpace(text)
		}
	}
	return out, nil
}

// Explanation is the answer of `e2sctl explain`.
type Explanation struct {
	Reason string           `json:"reason"`
	Text   string           `json:"text"`
	Stage  string           `json:"stage"`
	Rule   string           `json:"rule,omitempty"` // file:line and the Rego rule that yields the reason
	Filter string           `json:"filter,omitempty"`
	Record *auditlog.Record `json:"record,omitempty"`
	// TargetText says what the target's reason id (the record's
	// target_reason, e.g. purchasing's refusal of a credential) means.
	TargetText  string `json:"target_reason_text,omitempty"`
	CallerLabel string `json:"caller_label,omitempty"`
	TargetLabel string `json:"target_label,omitempty"`
}

var stages = map[string]string{
	"reg":  "registry (policies/registry.yaml): the script's registration",
	"pol":  "policy (Rego): the gate's decision rule",
	"flt":  "filter: the registration's filter chain",
	"gate": "gate agent: forwarding or audit",
	"adm":  "admin socket: command authorizations (admin.rego)",
	"sup":  "supervisor",
}

// Explain explains a reason id.
func (e *Explainer) Explain(id string) (Explanation, bool) {
	text, ok := e.Reasons[id]
	if !ok {
		return Explanation{}, false
	}
	x := Explanation{Reason: id, Text: text}
	prefix, rest, _ := strings.Cut(id, ".")
	x.Stage = stages[prefix]
	if prefix == "flt" {
		x.Filter = rest
	}
	if e.Modules != nil {
		x.Rule = findRule(e.Modules(), id)
	}
	return x, true
}

// ExplainRecord explains an audit record's decision.
func (e *Explainer) ExplainRecord(r auditlog.Record) Explanation {
	x, ok := e.Explain(r.Reason)
	if !ok {
		x = Explanation{Reason: r.Reason, Text: "unknown reason id"}
	}
	x.Record = &r
	if r.TargetReason != "" {
		x.TargetText = cmp.Or(e.Reasons[r.TargetReason], "unknown reason id")
	}
	x.CallerLabel, x.TargetLabel = e.Labels[r.Caller], e.Labels[r.Target]
	if len(r.Filters) > 0 && x.Filter == "" {
		x.Filter = strings.Join(r.Filters, ", ") + " (response filters that acted)"
	}
	return x
}

// findRule returns the Rego rule (with its comment) whose text names id.
func findRule(modules map[string]string, id string) string {
	names := make([]string, 0, len(modules))
	for n := range modules {
		if !strings.HasSuffix(n, "_test.rego") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		lines := strings.Split(modules[n], "\n")
		for i, l := range lines {
			if !strings.Contains(l, `"`+id+`"`) {
				continue
			}
			start := i
			for start > 0 && strings.HasPrefix(strings.TrimSpace(lines[start-1]), "#") {
				start--
			}
			end := i
			for end < len(lines)-1 && strings.TrimSpace(lines[end]) != "}" && strings.HasSuffix(strings.TrimSpace(lines[i]), "{") {
				end++
			}
			return fmt.Sprintf("%s:%d\n%s", n, i+1, strings.Join(lines[start:end+1], "\n"))
		}
	}
	return ""
}
