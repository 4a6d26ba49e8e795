package purchasing

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
)

// Roles of an organisation's members.
const (
	RoleBuyer   = "buyer"
	RoleManager = "manager"
)

// Member is a buyer of an organisation, identified by its certificate.
type Member struct {
	Name        string   `json:"name"`
	Role        string   `json:"role"`
	Certificate string   `json:"certificate,omitempty"` // PEM
	Fingerprint string   `json:"fingerprint,omitempty"` // hex SHA-256 of the DER; derived
	LimitCents  int64    `json:"limit_cents"`           // the most one order may total (gross)
	Categories  []string `json:"categories"`            // catalogue categories the buyer may order
	Revoked     bool     `json:"revoked,omitempty"`
}

// Org is a buyer organisation with its contract prices and terms.
type Org struct {
	ID      string           `json:"id"`
	Name    string           `json:"name"`
	Terms   string           `json:"terms,omitempty"`
	Prices  map[string]int64 `json:"prices,omitempty"` // sku → net contract price, cents
	Members []Member         `json:"members"`
}

// Enrolment is the operator's enrolment file (enrolment.json in the data dir).
type Enrolment struct {
	Orgs []Org `json:"orgs"`
}

// Buyer is an authenticated, registered member.
type Buyer struct {
	Member
	Org  *Org
	Cert *x509.Certificate
}

// IsManager reports whether the buyer is a purchasing manager of its org.
func (b *Buyer) IsManager() bool { return b.Role == RoleManager }

// May reports whether the buyer may order goods of category.
func (b *Buyer) May(category string) bool { return slices.Contains(b.Categories, category) }

// override is a member as a purchasing manager registered or changed it.
type override struct {
	Org string `json:"org"`
	Member
}

// registry is the set of organisations and members: the enrolment file,
// then the managers' changes (kept sealed in the store) over it.
type registry struct {
	mu        sync.Mutex
	path      string
	mtime     time.Time
	size      int64
	orgs      map[string]*Org
	byFP      map[string]*Buyer
	overrides map[string]override // fingerprint → member
	synced    map[string]bool     // limits given to payment since start
}

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

func parseCertPEM(p string) (*x509.Certificate, error) {
	blk, _ := pem.Decode([]byte(p))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// load re-reads the enrolment file if it changed. Errors keep the last good
// set (a bad file never opens the door wider).
func (r *registry) load() error {
	st, err := os.Stat(r.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if r.orgs != nil && r.size == -1 {
			return nil
		}
		r.size = -1
		return r.build(&Enrolment{})
	case err != nil:
		return err
	}
	if r.orgs != nil && st.ModTime().Equal(r.mtime) && st.Size() == r.size {
		return nil
	}
	b, err := os.ReadFile(r.path)
	if err != nil {
		return err
	}
	var e Enrolment
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrEnrolment, r.path, err)
	}
	if err := r.build(&e); err != nil {
		return err
	}
	r.mtime, r.size = st.ModTime(), st.Size()
	return nil
}

// build indexes an enrolment with the overrides applied.
func (r *registry) build(e *Enrolment) error {
	orgs := map[string]*Org{}
	byFP := map[string]*Buyer{}
	add := func(o *Org, m Member) error {
		cert, err := parseCertPEM(m.Certificate)
		if err != nil {
			return fmt.Errorf("%w: org %s member %q: %v", ErrEnrolment, o.ID, m.Name, err)
		}
		m.Fingerprint = Fingerprint(cert)
		if m.Role != RoleManager {
			m.Role = RoleBuyer
		}
		if prev := byFP[m.Fingerprint]; prev != nil && prev.Org != o {
			return fmt.Errorf("%w: certificate %s in two organisations", ErrEnrolment, m.Fingerprint[:16])
		}
		byFP[m.Fingerprint] = &Buyer{Member: m, Org: o, Cert: cert}
		return nil
	}
	for i := range e.Orgs {
		o := e.Orgs[i]
		if !orgIDRE.MatchString(o.ID) || orgs[o.ID] != nil {
			return fmt.Errorf("%w: org id %q (want [a-z0-9-]{1,32}, unique)", ErrEnrolment, o.ID)
		}
		orgs[o.ID] = &o
		for _, m := range o.Members {
			if err := add(&o, m); err != nil {
				return err
			}
		}
	}
	for fp, ov := range r.overrides {
		o := orgs[ov.Org]
		if o == nil {
			continue
		}
		if prev := byFP[fp]; prev != nil && prev.Org != o {
			continue // the file moved it elsewhere; the file wins
		}
		if err := add(o, ov.Member); err != nil {
			return err
		}
	}
	for _, o := range orgs {
		o.Members = nil
	}
	for _, b := range byFP {
		b.Org.Members = append(b.Org.Members, b.Member)
	}
	for _, o := range orgs {
		slices.SortFunc(o.Members, func(a, b Member) int { return cmpStr(a.Name+a.Fingerprint, b.Name+b.Fingerprint) })
	}
	r.orgs, r.byFP = orgs, byFP
	return nil
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// lookup returns the registered buyer with fingerprint fp (a copy).
func (h *Handler) lookup(fp string) *Buyer {
	h.reg.mu.Lock()
	defer h.reg.mu.Unlock()
	if err := h.reg.load(); err != nil {
		h.log.Error("enrolment", "error", err)
	}
	b := h.reg.byFP[fp]
	if b == nil {
		return nil
	}
	cp := *b
	return &cp
}

func (h *Handler) allBuyers() []*Buyer {
	h.reg.mu.Lock()
	defer h.reg.mu.Unlock()
	if err := h.reg.load(); err != nil {
		h.log.Error("enrolment", "error", err)
	}
	out := make([]*Buyer, 0, len(h.reg.byFP))
	for _, b := range h.reg.byFP {
		cp := *b
		out = append(out, &cp)
	}
	return out
}

// buyers lets a purchasing manager list and register members of its
// organisation and set their limits and categories.
func (h *Handler) buyers(ctx context.Context, c *callpb.Call) *callpb.Response {
	mgr, resp := h.mustAuthenticate(c)
	if resp != nil {
		return resp
	}
	if !mgr.IsManager() {
		return protocol.Error(403, "not_manager", "only a purchasing manager of the organisation may do this")
	}
	if c.GetMethod() == "GET" {
		var out []MemberView
		for _, m := range mgr.Org.Members {
			out = append(out, viewOf(mgr.Org.ID, m))
		}
		return protocol.JSON(200, map[string]any{"org": mgr.Org.ID, "buyers": out})
	}
	// authenticate took the manager from a signed request (the TLS client
	// certificate is only the web front's word), bound to its time and
	// nonce, so an old change cannot be sent again (say, to undo a
	// revocation).
	var req struct {
		Member
		Fingerprint string `json:"fingerprint"`
		Time        string `json:"time"` // optional: E2s-Time binds the request
	}
	dec := json.NewDecoder(bytes.NewReader(c.GetBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return protocol.Error(400, "bad_member", `want {"certificate" or "fingerprint","name","role","limit_cents","categories","revoked","time"}`)
	}
	m := req.Member
	if m.Certificate == "" {
		old := h.lookup(req.Fingerprint)
		if old == nil || old.Org.ID != mgr.Org.ID {
			return protocol.Error(404, "no_member", "no such member of your organisation")
		}
		m.Certificate = old.Certificate
	}
	cert, err := parseCertPEM(m.Certificate)
	if err != nil {
		return protocol.Error(400, "bad_certificate", "certificate is not a PEM X.509 certificate")
	}
	m.Fingerprint = Fingerprint(cert)
	if old := h.lookup(m.Fingerprint); old != nil && old.Org.ID != mgr.Org.ID {
		return protocol.Error(409, "other_org", "this certificate belongs to another organisation")
	}
	if m.Role != RoleManager {
		m.Role = RoleBuyer
	}
	if m.LimitCents < 0 || len(m.Name) > 200 || len(m.Categories) > 50 {
		return protocol.Error(400, "bad_member", "limit_cents >= 0, name up to 200 characters, up to 50 categories")
	}
	if m.Fingerprint == mgr.Fingerprint && (m.Revoked || m.Role != RoleManager) {
		return protocol.Error(409, "self", "a manager cannot revoke or demote itself")
	}
	h.reg.mu.Lock()
	next := map[string]override{}
	for k, v := range h.reg.overrides {
		next[k] = v
	}
	next[m.Fingerprint] = override{Org: mgr.Org.ID, Member: m}
	if err := h.db.put("members", next); err != nil {
		h.reg.mu.Unlock()
		h.log.Error("store members", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(503, "store_failed", "the change was not stored; try again")
	}
	h.reg.overrides = next
	h.reg.orgs = nil // rebuild on the next lookup
	delete(h.reg.synced, m.Fingerprint)
	h.reg.mu.Unlock()
	h.log.Info("member registered", "req_id", c.GetReqId(), "org", mgr.Org.ID, "by", mgr.Fingerprint[:16], "buyer", m.Fingerprint[:16], "role", m.Role, "limit_cents", m.LimitCents, "revoked", m.Revoked)
	b := h.lookup(m.Fingerprint)
	synced := b != nil && h.syncLimits(ctx, c.GetReqId(), b) == nil
	v := viewOf(mgr.Org.ID, m)
	return protocol.JSON(200, map[string]any{"member": v, "limits_synced": synced})
}

// syncLimits gives payment the buyer's control parameters.
func (h *Handler) syncLimits(ctx context.Context, reqID string, b *Buyer) error {
	limit, cats := b.LimitCents, b.Categories
	if b.Revoked {
		limit, cats = 0, []string{}
	}
	if cats == nil {
		cats = []string{}
	}
	body, _ := json.Marshal(map[string]any{"org": b.Org.ID, "buyer": b.Fingerprint, "limit_cents": limit, "categories": cats})
	r, err := h.call(ctx, reqID, "payment/limits", body)
	if err == nil && r.GetStatus()/100 != 2 {
		err = fmt.Errorf("payment/limits: status %d %s", r.GetStatus(), r.GetReason())
	}
	if err != nil {
		h.log.Warn("limits not synced", "req_id", reqID, "buyer", b.Fingerprint[:16], "error", err)
		return err
	}
	h.reg.mu.Lock()
	h.reg.synced[b.Fingerprint] = true
	h.reg.mu.Unlock()
	return nil
}

func (h *Handler) limitsSynced(fp string) bool {
	h.reg.mu.Lock()
	defer h.reg.mu.Unlock()
	return h.reg.synced[fp]
}

func newToken() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
