package purchasing

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

// Who a caller is rests on proof that the web front cannot forge: each
// request that acts for a person is signed by that person's registered key
// (API.md "Who you are"). The web front sees every request and is assumed
// compromised; what it says (SSL_CLIENT_CERT, the call's user) is a hint
// and never makes anyone a buyer.

const (
	challengeTTL  = 5 * time.Minute
	requestWindow = 5 * time.Minute // |E2s-Time − now| accepted
	sessionTTL    = time.Hour
	maxPending    = 10000
	// maxNonces bounds the replay guard: at most this many signed requests
	// in 2 × requestWindow (about 80 a second); beyond, it refuses.
	maxNonces = 50000
)

// Reason ids of refused credentials (policies/reasons.yaml).
const (
	reasonSignatureRequired = "purchasing.signature_required"
	reasonBadSignature      = "purchasing.bad_signature"
	reasonUnknownKey        = "purchasing.unknown_key"
	reasonStale             = "purchasing.stale_request"
	reasonReplayed          = "purchasing.replayed"
	reasonBadSession        = "purchasing.bad_session"
	reasonRevoked           = "purchasing.revoked"
	reasonReplayUnavailable = "purchasing.replay_guard_unavailable"
)

var (
	fingerprintRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	nonceRE       = regexp.MustCompile(`^[A-Za-z0-9_-]{16,64}$`)
)

type session struct {
	fp      string
	expires time.Time
}

// refuse is a refused credential: the error code a client acts on, the
// reason id (also in X-E2s-Reason) and the next step in the message. It is
// logged with the gate's request id, so the gate's audit record of the
// call (status 401/403/503) and this line name the same call.
func (h *Handler) refuse(c *callpb.Call, status int, code, reason, next string) *callpb.Response {
	h.log.Warn("credential refused", "req_id", c.GetReqId(), "script", c.GetScript(), "status", status, "reason", reason,
		"buyer", clipFP(c.GetMeta()["HTTP_E2S_BUYER"]))
	b, _ := json.Marshal(api.Error{Error: code, Message: next, Reason: reason})
	return &callpb.Response{Status: int32(status), Body: b, Reason: reason,
		Headers: map[string]string{"Content-Type": "application/json", "X-E2s-Reason": reason}}
}

func clipFP(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

// authenticate names the buyer of a call by its request signature
// (verifyRequest), within its session if it names one. No signature at all
// is (nil, nil): anonymous, whatever TLS client certificate outside
// reports. A credential that does not check out is an error answer, never
// anonymous.
func (h *Handler) authenticate(c *callpb.Call) (*Buyer, *callpb.Response) {
	meta := c.GetMeta()
	sess := meta["HTTP_E2S_SESSION"]
	if meta["HTTP_E2S_SIGNATURE"] == "" {
		if sess != "" {
			return nil, h.refuse(c, 401, "signature_required", reasonSignatureRequired,
				"a session is used with a signature on every request under the key that logged in; reload the page and log in again")
		}
		return nil, nil
	}
	var s *session
	if sess != "" {
		h.authMu.Lock()
		v, ok := h.sessions[sess]
		h.authMu.Unlock()
		if !ok || h.now().After(v.expires) {
			return nil, h.refuse(c, 401, "bad_session", reasonBadSession, "no such session or it expired; log in again")
		}
		s = &v
	}
	b, resp := h.verifyRequest(c, s)
	if resp != nil {
		return nil, resp
	}
	if b.Revoked {
		return nil, h.refuse(c, 403, "revoked", reasonRevoked, "this buyer's registration is revoked; ask your purchasing manager")
	}
	return b, nil
}

// mustAuthenticate is authenticate where anonymous is not enough.
func (h *Handler) mustAuthenticate(c *callpb.Call) (*Buyer, *callpb.Response) {
	b, resp := h.authenticate(c)
	if resp == nil && b == nil {
		next := "sign the request with your registered key (E2s-Signature, E2s-Buyer, E2s-Time, E2s-Nonce); log in first in the storefront"
		if c.GetMeta()["SSL_CLIENT_CERT"] != "" {
			next = "a TLS client certificate alone proves nothing; " + next
		}
		return nil, h.refuse(c, 401, "unauthenticated", reasonSignatureRequired, next)
	}
	return b, resp
}

// verifyRequest checks a signed request: the signer's registered
// certificate (E2s-Buyer, or the session's), the time within
// requestWindow, the CMS signature over api.RequestToSign, then the nonce
// is used — in that order, so that only holders of a registered key can
// fill the replay guard. A session's request must be signed by the key
// that logged in.
func (h *Handler) verifyRequest(c *callpb.Call, s *session) (*Buyer, *callpb.Response) {
	meta := c.GetMeta()
	now := h.now()
	fp := meta["HTTP_E2S_BUYER"]
	if fp == "" && s != nil {
		fp = s.fp
	}
	if s != nil && fp != s.fp {
		return nil, h.refuse(c, 401, "bad_session", reasonBadSession, "the request is signed by another key than the session's; log in again")
	}
	nonce, ts := meta["HTTP_E2S_NONCE"], meta["HTTP_E2S_TIME"]
	if !fingerprintRE.MatchString(fp) || !nonceRE.MatchString(nonce) {
		return nil, h.refuse(c, 401, "bad_signature", reasonBadSignature,
			"a signed request names its key (E2s-Buyer, 64 hex) and carries a fresh E2s-Nonce (16–64 of A-Z a-z 0-9 _ -); update your client")
	}
	t, err := time.Parse(time.RFC3339, ts)
	if err != nil || t.Before(now.Add(-requestWindow)) || t.After(now.Add(requestWindow)) {
		return nil, h.refuse(c, 401, "stale_request", reasonStale,
			"E2s-Time (RFC 3339) must be within 5 minutes of the merchant's clock; set your clock and send the request again")
	}
	b := h.lookup(fp)
	if b == nil {
		return nil, h.refuse(c, 401, "unknown_buyer", reasonUnknownKey,
			"your certificate is not registered; ask your purchasing manager to register it")
	}
	msg := api.RequestToSign(c.GetMethod(), api.PathPrefix+c.GetScript()+c.GetPathInfo(), c.GetQuery(), c.GetBody(), ts, nonce, fp)
	if _, err := cms.VerifyHeader(meta["HTTP_E2S_SIGNATURE"], msg, b.Cert, cms.HeaderVerifyOptions{CurrentTime: now}); err != nil {
		h.log.Info("request signature", "req_id", c.GetReqId(), "error", err)
		return nil, h.refuse(c, 401, "bad_signature", reasonBadSignature,
			"the E2s-Signature does not verify against your registered certificate over this request; sign it again (log in again in the storefront)")
	}
	sum := sha256.Sum256([]byte(fp + "\n" + nonce))
	switch err := h.replay.use(hex.EncodeToString(sum[:]), t.Add(requestWindow), now); {
	case errors.Is(err, ErrReplayed):
		return nil, h.refuse(c, 401, "replayed", reasonReplayed, "this signed request was already received; sign it again with a new nonce")
	case err != nil:
		h.log.Error("replay guard", "req_id", c.GetReqId(), "error", err)
		return nil, h.refuse(c, 503, "replay_guard_unavailable", reasonReplayUnavailable,
			"the merchant cannot record signed requests now and refuses them; try again in a few minutes")
	}
	c.User = provenUser(b.Fingerprint) // Handle names the person to the gate
	return b, nil
}

// provenUser is how purchasing names a person it proved, to the gate (the
// audit record's user) and on the calls it makes for that person.
func provenUser(fp string) string { return "buyer:" + fp }

func viewOf(org string, m Member) MemberView {
	return MemberView{Org: org, Fingerprint: m.Fingerprint, Name: m.Name, Role: m.Role, LimitCents: m.LimitCents, Categories: m.Categories, Revoked: m.Revoked}
}

// login is E2S §6.2.1.1 steps 1–4: GET gives a single-use challenge; POST
// is the signed request (verifyRequest) whose body names the challenge and
// the signer, and answers a session bound to that key.
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
	if c.GetMeta()["HTTP_E2S_SIGNATURE"] == "" {
		return h.refuse(c, 401, "signature_required", reasonSignatureRequired, "sign the login with your key (E2s-Signature); update your client")
	}
	b, resp := h.verifyRequest(c, nil)
	if resp != nil {
		return resp
	}
	if req.Fingerprint != b.Fingerprint {
		return h.refuse(c, 401, "bad_signature", reasonBadSignature, "the login names another certificate than the one that signed it")
	}
	if b.Revoked {
		return h.refuse(c, 403, "revoked", reasonRevoked, "this buyer's registration is revoked; ask your purchasing manager")
	}
	h.authMu.Lock()
	exp, ok := h.challenges[req.Challenge]
	delete(h.challenges, req.Challenge)
	if !ok || now.After(exp) {
		h.authMu.Unlock()
		return h.refuse(c, 401, "bad_challenge", reasonStale, "unknown or used challenge; log in again (GET login for a new one)")
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
	if sig, err := h.sign(ctx, c.GetReqId(), "session", doc); err == nil {
		ans.MerchantSignature = sig
	} else {
		h.log.Warn("login answer unsigned", "req_id", c.GetReqId(), "error", err)
	}
	h.log.Info("login", "req_id", c.GetReqId(), "org", b.Org.ID, "buyer", b.Fingerprint[:16])
	return protocol.JSON(200, ans)
}
