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
	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/internal/document/cms"
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

// authenticate names the buyer of a call: an E2s-Signature header over the
// body, else an E2s-Session, else the TLS client certificate. No
// credential at all is (nil, nil): anonymous. A credential that does not
// check out is an error answer, never anonymous.
func (h *Handler) authenticate(c *callpb.Call) (*Buyer, *callpb.Response) {
	meta := c.GetMeta()
	now := h.now()
	var b *Buyer
	switch {
	case meta["HTTP_E2S_SIGNATURE"] != "":
		if c.GetMethod() != "POST" || len(c.GetBody()) == 0 {
			return nil, protocol.Error(401, "bad_signature", "E2s-Signature signs a request body; use a session or the TLS certificate for GET")
		}
		cands := h.allBuyers()
		if fp := meta["HTTP_E2S_BUYER"]; fp != "" {
			cands = nil
			if one := h.lookup(fp); one != nil {
				cands = []*Buyer{one}
			}
		}
		for _, cand := range cands {
			if _, err := cms.VerifyHeader(meta["HTTP_E2S_SIGNATURE"], c.GetBody(), cand.Cert, cms.HeaderVerifyOptions{CurrentTime: now}); err == nil {
				b = cand
				break
			}
		}
		if b == nil {
			return nil, protocol.Error(401, "bad_signature", "the E2s-Signature header does not verify against a registered certificate")
		}
		if !h.firstUse(meta["HTTP_E2S_SIGNATURE"], now) {
			return nil, protocol.Error(401, "replayed", "this signed request was already received; sign it again")
		}
	case meta["HTTP_E2S_SESSION"] != "":
		h.authMu.Lock()
		s, ok := h.sessions[meta["HTTP_E2S_SESSION"]]
		h.authMu.Unlock()
		if !ok || now.After(s.expires) {
			return nil, protocol.Error(401, "bad_session", "no such session or it expired; log in again")
		}
		if b = h.lookup(s.fp); b == nil {
			return nil, protocol.Error(401, "unknown_buyer", "the certificate is not registered")
		}
	case meta["SSL_CLIENT_CERT"] != "":
		cert, err := parseCertPEM(meta["SSL_CLIENT_CERT"])
		if err != nil {
			return nil, protocol.Error(401, "unknown_buyer", "the client certificate does not parse")
		}
		if b = h.lookup(Fingerprint(cert)); b == nil {
			return nil, protocol.Error(401, "unknown_buyer", "the client certificate is not registered")
		}
		if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
			return nil, protocol.Error(401, "expired_certificate", "the client certificate is not valid now")
		}
	default:
		return nil, nil
	}
	if b.Revoked {
		return nil, protocol.Error(403, "revoked", "this buyer's registration is revoked")
	}
	return b, nil
}

// mustAuthenticate is authenticate where anonymous is not enough.
func (h *Handler) mustAuthenticate(c *callpb.Call) (*Buyer, *callpb.Response) {
	b, resp := h.authenticate(c)
	if resp == nil && b == nil {
		resp = protocol.Error(401, "unauthenticated", "present a registered certificate, an E2s-Signature or an E2s-Session")
	}
	return b, resp
}

// firstUse records a header signature and reports whether it is new
// within replayWindow: a signed request is answered once.
func (h *Handler) firstUse(sig string, now time.Time) bool {
	sum := sha256.Sum256([]byte(sig))
	k := hex.EncodeToString(sum[:])
	h.authMu.Lock()
	defer h.authMu.Unlock()
	for s, exp := range h.seen {
		if now.After(exp) {
			delete(h.seen, s)
		}
	}
	if _, ok := h.seen[k]; ok {
		return false
	}
	if len(h.seen) < maxPending {
		h.seen[k] = now.Add(replayWindow)
	}
	return true
}

type session struct {
	fp      string
	expires time.Time
}

func viewOf(org string, m Member) MemberView {
	return MemberView{Org: org, Fingerprint: m.Fingerprint, Name: m.Name, Role: m.Role, LimitCents: m.LimitCents, Categories: m.Categories, Revoked: m.Revoked}
}

const (
	challengeTTL = 5 * time.Minute
	replayWindow = 2 * challengeTTL
	sessionTTL   = time.Hour
	maxPending   = 10000
)

func (h *Handler) login(ctx context.Context, c *callpb.Call) *callpb.Response {
	now := h.now()
	if c.GetMethod() == "GET" {
		ch := newID()
		h.authMu.Lock()
		for k, exp := range h.challenges {
			if now.After(exp) {
				delete(h.challenges, k)
			}
		}
		if len(h.challenges) >= maxPending {
			h.authMu.Unlock()
			return protocol.Error(503, "busy", "too many logins in progress; try again")
		}
		h.challenges[ch] = now.Add(challengeTTL)
		h.authMu.Unlock()
		return protocol.JSON(200, map[string]string{"type": "e2sgate.login.v1", "challenge": ch, "merchant": merchantName})
	}
	var req LoginRequest
	dec := json.NewDecoder(bytes.NewReader(c.GetBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Type != api.TypeLogin {
		return protocol.Error(400, "bad_login", `want {"type":"e2sgate.login.v1","challenge","fingerprint","time"}`)
	}
	t, err := time.Parse(time.RFC3339, req.Time)
	if err != nil || t.Before(now.Add(-challengeTTL)) || t.After(now.Add(challengeTTL)) {
		return protocol.Error(401, "stale_login", "the login time is not within 5 minutes of the merchant's clock")
	}
	b := h.lookup(req.Fingerprint)
	if b == nil {
		return protocol.Error(401, "unknown_buyer", "the certificate is not registered")
	}
	if _, err := cms.VerifyHeader(c.GetMeta()["HTTP_E2S_SIGNATURE"], c.GetBody(), b.Cert, cms.HeaderVerifyOptions{CurrentTime: now}); err != nil {
		return protocol.Error(401, "bad_signature", "the E2s-Signature header does not verify against the registered certificate")
	}
	if b.Revoked {
		return protocol.Error(403, "revoked", "this buyer's registration is revoked")
	}
	h.authMu.Lock()
	exp, ok := h.challenges[req.Challenge]
	delete(h.challenges, req.Challenge)
	if !ok || now.After(exp) {
		h.authMu.Unlock()
		return protocol.Error(401, "bad_challenge", "unknown or used challenge; GET login for a new one")
	}
	for k, s := range h.sessions {
		if now.After(s.expires) {
			delete(h.sessions, k)
		}
	}
	id := newToken()
	h.sessions[id] = session{fp: b.Fingerprint, expires: now.Add(sessionTTL)}
	h.authMu.Unlock()
	ans := LoginAnswer{Type: api.TypeSession, Session: id, Expires: now.Add(sessionTTL).UTC().Format(time.RFC3339),
		Buyer: viewOf(b.Org.ID, b.Member), Catalogue: "/cgi-bin/purchasing/private"}
	doc, _ := json.Marshal(ans)
	if sig, err := h.sign(ctx, c.GetReqId(), doc); err == nil {
		ans.MerchantSignature = sig
	} else {
		h.log.Warn("login answer unsigned", "req_id", c.GetReqId(), "error", err)
	}
	h.log.Info("login", "req_id", c.GetReqId(), "org", b.Org.ID, "buyer", b.Fingerprint[:16])
	return protocol.JSON(200, ans)
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
	// A change to the organisation must be signed end to end by the
	// manager (E2s-Signature, or the session of a signed login): the TLS
	// client certificate is only the web front's word, and a compromised
	// web front could name any manager's public certificate.
	if c.GetMeta()["HTTP_E2S_SIGNATURE"] == "" && c.GetMeta()["HTTP_E2S_SESSION"] == "" {
		return protocol.Error(401, "signature_required", "sign the change (E2s-Signature header) or log in with your key first")
	}
	var req struct {
		Member
		Fingerprint string `json:"fingerprint"`
		Time        string `json:"time"`
	}
	dec := json.NewDecoder(bytes.NewReader(c.GetBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return protocol.Error(400, "bad_member", `want {"certificate" or "fingerprint","name","role","limit_cents","categories","revoked","time"}`)
	}
	if c.GetMeta()["HTTP_E2S_SIGNATURE"] != "" {
		// A signed change is bound to its time, so that an old one cannot
		// be sent again later (say, to undo a revocation).
		t, err := time.Parse(time.RFC3339, req.Time)
		if now := h.now(); err != nil || t.Before(now.Add(-challengeTTL)) || t.After(now.Add(challengeTTL)) {
			return protocol.Error(401, "stale_request", "a signed change carries \"time\" (RFC 3339) within 5 minutes of the merchant's clock")
		}
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
