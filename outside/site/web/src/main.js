// The storefront (E2S §2.5, §6.2.1.1): browse, log in with the buyer's
// certificate, basket, the merchant's signed offer, acceptance signed with
// the buyer's key in WebCrypto, the countersigned contract, the order and
// its delivery. Every request goes to /cgi-bin/purchasing/… through the
// web front and the gate agent; see compartments/purchasing/API.md.
import * as cms from "./cms.js";

const API = "/cgi-bin/purchasing/";
const $ = (id) => document.getElementById(id);

const state = {
  merchant: null, // {cert, cn, fingerprint}
  cred: null, // {key, cert, cn, fingerprint}
  session: null, // {id, buyer, org}
  catalogue: null,
  basket: new Map(), // sku -> qty
  offer: null, // {der, doc}
  contract: null, // {der, orderId}
};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function money(cents, currency) {
  return (cents / 100).toFixed(2) + " " + (currency || "");
}

function status(id, text, kind) {
  const e = $(id);
  e.textContent = text;
  e.className = "status " + (kind || "");
}

// call sends one request to purchasing. Once a key is loaded and logged
// in (and for the login itself) every request is signed with it: the
// session alone, or the TLS client certificate, proves nothing.
async function call(method, script, body, extraHeaders) {
  const init = { method, headers: Object.assign({}, extraHeaders || {}) };
  if (body !== undefined) {
    init.body = body;
    if (!init.headers["Content-Type"]) init.headers["Content-Type"] = "application/json";
  }
  if (state.cred && (state.session || (script === "login" && method === "POST"))) {
    if (state.session) init.headers["E2s-Session"] = state.session.id;
    Object.assign(init.headers, await cms.signRequest(method, API + script, "", body, state.cred));
  }
  const r = await fetch(API + script, init);
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    let next = "log in again";
    try {
      const j = await r.clone().json();
      if (j.error === "unknown_buyer") next = "ask your purchasing manager to register your certificate";
      else if (j.error === "stale_request") next = "check your computer's clock, then log in again";
      msg = r.status + " " + j.error + (j.message ? ": " + j.message : "") + (j.reason ? " (" + j.reason + ")" : "");
    } catch (_) {
      /* not JSON */
    }
    if (r.status === 401 && state.session && script !== "login") {
      // Sessions live in the purchasing compartment's memory: after a
      // restart (or an hour), or when a signature is refused, the buyer
      // logs in again (the merchant's answer says what to do).
      state.session = null;
      status("login-status", "your session has ended (" + msg + "): " + next, "bad");
      $("login").disabled = !state.cred;
    }
    const reason = r.headers.get("X-E2s-Reason");
    const err = new Error(reason ? msg + " [" + reason + "]" : msg);
    err.status = r.status;
    throw err;
  }
  return r;
}

function download(name, der, type) {
  const a = el("a", { href: URL.createObjectURL(new Blob([der], { type })), download: name }, name);
  return a;
}

// ---- merchant certificate -------------------------------------------------

async function loadMerchant() {
  const r = await fetch("/cgi-bin/keyhandler/certificate");
  if (!r.ok) throw new Error("merchant certificate: " + r.status);
  const blocks = cms.pemBlocks(await r.text());
  if (!blocks.length) throw new Error("merchant certificate: not PEM");
  const cert = cms.parseCertificate(blocks[0].der);
  state.merchant = { cert, ...(await cms.describeCertificate(cert)) };
  $("merchant").textContent = state.merchant.cn + " — SHA-256 " + state.merchant.fingerprint;
}

// ---- credential and log-in (steps 1–4) -------------------------------------

async function importCredential(files) {
  state.cred = null;
  state.session = null;
  try {
    let text = "";
    for (const f of files) text += (await f.text()) + "\n";
    state.cred = await cms.importCredential(text);
    status("cred-status", "key and certificate of " + state.cred.cn + " loaded (SHA-256 " + state.cred.fingerprint + "); the key stays in this page, not extractable", "ok");
    $("login").disabled = false;
  } catch (e) {
    status("cred-status", e.message, "bad");
    $("login").disabled = true;
  }
}

// newCredential makes a key and certificate here, for buyers who have
// none yet: the certificate goes to the purchasing manager, who registers
// it (POST buyers); the credential file is the buyer's to keep.
async function newCredential() {
  const name = $("new-name").value.trim();
  if (!name) {
    status("new-status", "your name goes into the certificate", "bad");
    return;
  }
  try {
    const made = await cms.newCredential(name);
    state.cred = await cms.importCredential(made.file);
    state.session = null;
    $("new-cert").value = made.certPEM;
    $("new-cred").hidden = false;
    $("new-download").replaceChildren(download("e2s-" + name.replace(/[^A-Za-z0-9._-]+/g, "_") + ".pem", new TextEncoder().encode(made.file), "application/x-pem-file"));
    status("new-status", "key and certificate made for " + state.cred.cn + " (SHA-256 " + state.cred.fingerprint + "); save the credential file and give the certificate to your purchasing manager", "ok");
    status("cred-status", "key and certificate of " + state.cred.cn + " loaded (SHA-256 " + state.cred.fingerprint + ")", "ok");
    $("login").disabled = false;
  } catch (e) {
    status("new-status", e.message, "bad");
  }
}

async function login() {
  status("login-status", "logging in…");
  try {
    const page = await (await call("GET", "login")).json();
    const body = new TextEncoder().encode(JSON.stringify({
      type: "e2sgate.login.v1",
      challenge: page.challenge,
      fingerprint: state.cred.fingerprint,
      time: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    }));
    const ans = await (await call("POST", "login", body)).json();
    // Step 3: the merchant's answer is signed; check it before trusting the session.
    let signed = "answer not signed by the merchant";
    if (ans.merchant_signature) {
      const { sd, content } = cms.parseSignedData(cms.fromBase64(ans.merchant_signature));
      await cms.verifySigner(sd, 0, state.merchant.cert);
      const doc = JSON.parse(new TextDecoder().decode(content));
      if (doc.session !== ans.session) throw new Error("the merchant's signed answer names another session");
      signed = "merchant's answer signature verified";
    }
    state.session = { id: ans.session, buyer: ans.buyer };
    await loadCatalogue();
    $("manager").hidden = ans.buyer.role !== "manager";
    status("login-status", "logged in as " + ans.buyer.name + " (" + ans.buyer.org + ", " + ans.buyer.role + "); " + signed, "ok");
  } catch (e) {
    state.session = null;
    status("login-status", "log-in failed: " + e.message, "bad");
  }
}

// ---- catalogue and basket ---------------------------------------------------

async function loadCatalogue() {
  let cat;
  if (state.session) {
    cat = await (await call("GET", "private")).json();
    $("cat-title").textContent = "Private catalogue of " + cat.org.name;
    $("cat-terms").textContent = cat.terms ? "Terms: " + cat.terms : "";
    const b = cat.buyer;
    $("buyer").textContent = b.name + ": limit " + money(b.limit_cents, cat.currency) + " per order; categories " + (b.categories || []).join(", ");
  } else {
    cat = await (await call("GET", "catalogue")).json();
    $("cat-title").textContent = "Public catalogue";
  }
  state.catalogue = cat;
  const tb = $("catalogue").tBodies[0];
  tb.replaceChildren();
  for (const p of cat.products) {
    const allowed = p.allowed !== false;
    const price = p.list_cents && p.list_cents !== p.price_cents
      ? el("span", {}, money(p.price_cents, cat.currency) + " ", el("s", {}, money(p.list_cents, cat.currency)))
      : money(p.price_cents, cat.currency);
    tb.append(el("tr", { "data-sku": p.sku },
      el("td", {}, p.sku), el("td", {}, p.name), el("td", {}, p.category),
      el("td", { class: "num" }, price), el("td", { class: "num" }, p.vat_percent + " %"),
      el("td", {}, allowed
        ? el("button", { "data-sku": p.sku, class: "add", onclick: () => addToBasket(p.sku) }, "add")
        : el("span", { class: "muted" }, "not allowed for you"))));
  }
  await showBasket();
}

async function addToBasket(sku) {
  state.basket.set(sku, (state.basket.get(sku) || 0) + 1);
  await showBasket();
}

function basketBody() {
  return JSON.stringify({ items: [...state.basket].map(([sku, qty]) => ({ sku, qty })) });
}

function linesTable(priced) {
  const t = el("table", {}, el("thead", {}, el("tr", {},
    ...["SKU", "Item", "Qty", "Unit", "Net", "VAT"].map((h) => el("th", {}, h)))));
  const tb = el("tbody");
  for (const l of priced.lines) {
    tb.append(el("tr", { "data-sku": l.sku }, el("td", {}, l.sku), el("td", {}, l.name), el("td", { class: "num" }, l.qty),
      el("td", { class: "num" }, money(l.unit_cents, priced.currency)), el("td", { class: "num" }, money(l.net_cents, priced.currency)),
      el("td", { class: "num" }, l.vat_percent + " %")));
  }
  t.append(tb);
  return t;
}

function vatTable(priced) {
  const t = el("table", { class: "vat" }, el("thead", {}, el("tr", {},
    ...["VAT rate", "Net", "VAT"].map((h) => el("th", {}, h)))));
  const tb = el("tbody");
  for (const g of priced.vat) {
    tb.append(el("tr", { "data-rate": g.percent }, el("td", { class: "num" }, g.percent + " %"),
      el("td", { class: "num" }, money(g.net_cents, priced.currency)), el("td", { class: "num" }, money(g.vat_cents, priced.currency))));
  }
  tb.append(el("tr", { class: "total" }, el("td", {}, "Total"), el("td", { class: "num" }, money(priced.net_cents, priced.currency)),
    el("td", { class: "num gross" }, "gross " + money(priced.gross_cents, priced.currency))));
  t.append(tb);
  return t;
}

let basketGen = 0;

// showBasket prices the basket at the merchant; when clicks overtake each
// other only the answer for the latest basket is shown.
async function showBasket() {
  const gen = ++basketGen;
  const box = $("basket");
  if (state.basket.size === 0) {
    box.replaceChildren(el("p", { class: "muted" }, "empty"));
    $("get-offer").disabled = true;
    return;
  }
  try {
    const priced = await (await call("POST", "basket", basketBody())).json();
    if (gen !== basketGen) return;
    box.replaceChildren(linesTable(priced), vatTable(priced),
      el("button", { id: "clear-basket", onclick: () => { state.basket.clear(); showBasket(); } }, "empty the basket"));
    $("get-offer").disabled = false;
  } catch (e) {
    if (gen === basketGen) box.replaceChildren(el("p", { class: "status bad" }, e.message));
  }
}

// ---- offer (step 5) and acceptance (step 6) --------------------------------

async function getOffer() {
  state.offer = null;
  $("offer").hidden = false;
  $("accept").disabled = true;
  $("offer-body").replaceChildren();
  status("offer-status", "asking the merchant for a signed offer…");
  try {
    const der = new Uint8Array(await (await call("POST", "offer", basketBody())).arrayBuffer());
    const { sd, content } = cms.parseSignedData(der);
    if (sd.signerInfos.length !== 1) throw new Error("an offer carries exactly one signature");
    const signer = await cms.verifySigner(sd, 0, state.merchant.cert);
    const doc = JSON.parse(new TextDecoder().decode(content));
    if (doc.type !== "e2sgate.offer.v1") throw new Error("not an offer: " + doc.type);
    if (state.session && doc.buyer !== state.cred.fingerprint) throw new Error("the offer is made out to someone else");
    if (!(Date.parse(doc.valid_until) > Date.now())) throw new Error("the offer has expired (" + doc.valid_until + ")");
    const want = [...state.basket].map(([sku, qty]) => sku + "=" + qty).sort().join(",");
    const got = doc.lines.map((l) => l.sku + "=" + l.qty).sort().join(",");
    if (want !== got) throw new Error("the offer's lines (" + got + ") are not your basket (" + want + ")");
    state.offer = { der, doc };
    $("offer-body").replaceChildren(
      el("p", {}, "Offer ", el("code", { id: "offer-id" }, doc.offer_id), " from ", doc.merchant,
        ", issued " + doc.issued + ", valid until " + doc.valid_until + (doc.org ? ", for " + doc.org : " (quotation: log in to accept)")),
      linesTable(doc), vatTable(doc),
      el("p", { id: "offer-terms" }, "Terms: " + doc.terms),
      el("p", {}, download("offer-" + doc.offer_id + ".p7m", der, "application/pkcs7-mime")));
    status("offer-status", "merchant signature verified (" + signer.cn + ", SHA-256 " + signer.fingerprint + ", signed " +
      (signer.signingTime ? signer.signingTime.toISOString() : "?") + ")", "ok");
    $("accept").disabled = !(doc.org && state.session);
  } catch (e) {
    status("offer-status", "no valid offer: " + e.message, "bad");
  }
}

async function acceptOffer() {
  $("accept").disabled = true;
  $("contract").hidden = false;
  $("contract-body").replaceChildren();
  status("contract-status", "signing the offer with your key…");
  try {
    const acceptance = await cms.accept(state.offer.der, state.cred);
    status("contract-status", "acceptance signed; sending it to the merchant…");
    const body = JSON.stringify({
      acceptance: cms.toBase64(acceptance),
      card: { pan: $("pan").value.replace(/\s+/g, ""), expiry: $("expiry").value.trim() },
    });
    const r = await call("POST", "accept", body);
    const der = new Uint8Array(await r.arrayBuffer());
    await showContract(der, state.offer.der);
  } catch (e) {
    status("contract-status", "not accepted: " + e.message, "bad");
    $("accept").disabled = false;
  }
}

// ---- contract (step 7) ------------------------------------------------------

async function showContract(der, offerDER) {
  const { sd, content } = cms.parseSignedData(der);
  if (offerDER) {
    const offer = cms.parseSignedData(offerDER);
    if (!cms.equalBytes(offer.content, content)) throw new Error("the contract's content is not the offer you accepted");
  }
  if (sd.signerInfos.length !== 3) throw new Error("a contract carries three signatures, this one " + sd.signerInfos.length);
  const who = ["merchant (offer)", "buyer (acceptance)", "merchant (confirmation)"];
  const expect = [state.merchant.cert, state.cred.cert, state.merchant.cert];
  const rows = [];
  for (let i = 0; i < 3; i++) {
    const s = await cms.verifySigner(sd, i, expect[i]);
    rows.push(el("li", { "data-signer": i + 1 }, who[i] + ": " + s.cn + " — verified, signed " + (s.signingTime ? s.signingTime.toISOString() : "?")));
  }
  const cs = await cms.verifyCounterSignature(sd, 1, state.merchant.cert);
  rows.push(el("li", { "data-signer": "countersignature" }, "merchant's countersignature over the buyer's signature — verified, signed " +
    (cs.signingTime ? cs.signingTime.toISOString() : "?")));
  const doc = JSON.parse(new TextDecoder().decode(content));
  state.contract = { der, orderId: doc.offer_id };
  $("contract-body").replaceChildren(
    el("p", {}, "Order ", el("code", { id: "order-id" }, doc.offer_id), ": " + money(doc.gross_cents, doc.currency) + " gross"),
    el("ol", { id: "contract-signers" }, ...rows),
    el("p", {}, download("contract-" + doc.offer_id + ".p7m", der, "application/pkcs7-mime"),
      " (check it with openssl cms -verify -binary -inform DER -purpose any -noverify)"));
  status("contract-status", "contract: three signatures verified", "ok");
  $("order").hidden = false;
  await refreshOrder();
}

// ---- order and delivery (step 9) -------------------------------------------

let pollTimer = null;

// refreshOrder shows the order as the merchant has it; until the back
// office confirms delivery the page asks again every few seconds.
async function refreshOrder() {
  const id = state.contract && state.contract.orderId;
  if (!id) return;
  clearTimeout(pollTimer);
  try {
    const o = await (await call("GET", "order/" + id)).json();
    const a = o.authorization || {};
    state.order = o;
    $("order-state").textContent = o.status;
    $("order-state").dataset.status = o.status;
    $("order-body").replaceChildren(
      el("p", {}, "Payment: " + (a.approved ? "authorised, code " + a.auth_code : "not authorised " + (a.reason || ""))),
      el("p", {}, "Back office: " + (o.back_office || "?") + (o.delivery && o.delivery.at ? "; delivered " + o.delivery.at + " (" + o.delivery.file_name + ")" : "")),
      o.acknowledgement && o.acknowledgement.at
        ? el("p", { id: "ack-recorded" }, "Your acknowledgement of " + o.acknowledgement.file_name + " (" + o.acknowledgement.file_size + " bytes) is recorded, " + o.acknowledgement.at)
        : "");
    const delivered = !!(o.delivery && o.delivery.at);
    $("get-delivery").disabled = !delivered;
    if (!delivered) pollTimer = setTimeout(refreshOrder, 3000);
  } catch (e) {
    $("order-body").replaceChildren(el("p", { class: "status bad" }, e.message));
  }
}

// getDelivery fetches the delivery, opens it here — decrypt with your key,
// verify the merchant's signature, decompress — and sends the signed file
// acknowledgement (file name, size, digest) back to the merchant.
async function getDelivery() {
  const id = state.contract.orderId;
  const box = $("delivery-body");
  box.replaceChildren();
  status("delivery-status", "fetching the delivery…");
  try {
    const der = new Uint8Array(await (await call("GET", "delivery/" + id)).arrayBuffer());
    box.append(el("p", {}, "Encrypted delivery (" + der.length + " bytes): ", download("delivery-" + id + ".p7m", der, "application/pkcs7-mime")));
    const opened = await cms.openDelivery(der, state.cred, state.merchant.cert);
    const name = (state.order && state.order.delivery && state.order.delivery.file_name) || "delivery-" + id + ".bin";
    const text = new TextDecoder("utf-8", { fatal: false }).decode(opened.document);
    box.append(
      el("p", {}, "Opened: " + name + ", " + opened.document.length + " bytes, signed by " + opened.signer.cn + " (verified)" +
        (opened.compressed ? ", decompressed" : "") + ": ", download(name, opened.document, "application/octet-stream")),
      el("pre", { id: "delivery-document" }, text.length > 4000 ? text.slice(0, 4000) + "…" : text));
    const ack = await cms.acknowledge(opened.signedData, opened.document, name, state.cred);
    const ans = await (await call("POST", "ack/" + id, ack, { "Content-Type": "application/pkcs7-mime" })).json();
    box.append(el("p", {}, "Signed acknowledgement sent: ", download("ack-" + id + ".p7m", ack, "application/pkcs7-mime")));
    status("delivery-status", "delivery opened and acknowledged: order " + ans.status, "ok");
    await refreshOrder();
  } catch (e) {
    status("delivery-status", "delivery: " + e.message, "bad");
  }
}

// ---- statement for purchasing managers (reconciliation) -------------------

async function getStatement() {
  const box = $("statement-body");
  box.replaceChildren();
  status("statement-status", "asking for the signed statement…");
  try {
    const der = new Uint8Array(await (await call("GET", "statement")).arrayBuffer());
    const { sd, content } = cms.parseSignedData(der);
    if (sd.signerInfos.length !== 1) throw new Error("a statement carries the merchant's signature alone");
    const signer = await cms.verifySigner(sd, 0, state.merchant.cert);
    const st = JSON.parse(new TextDecoder().decode(content));
    if (st.type !== "e2sgate.statement.v1") throw new Error("not a statement: " + st.type);
    const cur = st.currency;
    const t = el("table", { id: "statement-orders" }, el("thead", {}, el("tr", {},
      ...["Order", "Created", "Status", "Net", "Gross", "Authorised", "Captured"].map((h) => el("th", {}, h)))));
    const tb = el("tbody");
    for (const o of st.orders || []) {
      tb.append(el("tr", { "data-order": o.order_id }, el("td", {}, el("code", {}, o.order_id.slice(0, 12) + "…")), el("td", {}, o.created),
        el("td", {}, o.status), el("td", { class: "num" }, money(o.net_cents, cur)), el("td", { class: "num" }, money(o.gross_cents, cur)),
        el("td", { class: "num" }, money(o.authorized_cents || 0, cur) + (o.auth_code ? " (" + o.auth_code + ")" : "")),
        el("td", { class: "num" }, money(o.captured_cents || 0, cur))));
    }
    t.append(tb);
    box.replaceChildren(el("p", {}, "Statement for " + st.org + ", issued " + st.issued + ": " + (st.orders || []).length + " orders; authorised " +
      money(st.authorized_cents || 0, cur) + ", captured " + money(st.captured_cents || 0, cur)), t, vatTable(st),
      el("p", {}, download("statement-" + st.org + ".p7m", der, "application/pkcs7-mime")));
    status("statement-status", "statement signature verified (" + signer.cn + ")", "ok");
  } catch (e) {
    status("statement-status", "statement: " + e.message, "bad");
  }
}

// ---- wiring -------------------------------------------------------------------

async function start() {
  // Anything the content security policy blocks is a fault of this page: say so.
  document.addEventListener("securitypolicyviolation", (e) =>
    status("ready", "blocked by the content security policy: " + e.violatedDirective + " " + (e.blockedURI || ""), "bad"));
  $("cred-file").addEventListener("change", (ev) => importCredential(ev.target.files));
  $("login").addEventListener("click", login);
  $("new-key").addEventListener("click", newCredential);
  $("get-statement").addEventListener("click", getStatement);
  $("get-offer").addEventListener("click", getOffer);
  $("accept").addEventListener("click", acceptOffer);
  $("refresh-order").addEventListener("click", refreshOrder);
  $("get-delivery").addEventListener("click", getDelivery);
  if (!globalThis.crypto || !globalThis.crypto.subtle) {
    status("ready", "this page needs WebCrypto (HTTPS and a current browser)", "bad");
    return;
  }
  try {
    await loadMerchant();
    await loadCatalogue();
    status("ready", "ready", "ok");
  } catch (e) {
    status("ready", e.message, "bad");
  }
}

start();
