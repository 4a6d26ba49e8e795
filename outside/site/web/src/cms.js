// CMS (RFC 5652) for the storefront, on PKI.js and WebCrypto: the buyer's
// credential (PKCS#8 ECDSA P-256 key + X.509 certificate), the header
// signature for log-in (detached SignedData, SHA-512, no certificates), the
// check of the merchant's signed offer and the buyer's acceptance — a
// second SignerInfo over the same content, as cms.AddSigner writes it — and
// the check of the contract (merchant, buyer, merchant, and the merchant's
// countersignature over the buyer's signature).
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

export const OID = {
  data: "1.2.840.113549.1.7.1",
  signedData: "1.2.840.113549.1.7.2",
  contentType: "1.2.840.113549.1.9.3",
  messageDigest: "1.2.840.113549.1.9.4",
  signingTime: "1.2.840.113549.1.9.5",
  counterSignature: "1.2.840.113549.1.9.6",
  sha256: "2.16.840.1.101.3.4.2.1",
  sha512: "2.16.840.1.101.3.4.2.3",
  ecPublicKey: "1.2.840.10045.2.1",
  envelopedData: "1.2.840.113549.1.7.3",
  authEnvelopedData: "1.2.840.113549.1.9.16.1.23",
  compressedData: "1.2.840.113549.1.9.16.1.9",
  zlib: "1.2.840.113549.1.9.16.3.8",
  aes256GCM: "2.16.840.1.101.3.4.1.46",
  aes256Wrap: "2.16.840.1.101.3.4.1.45",
  ecdhSHA256KDF: "1.3.132.1.11.1",
  msgSigDigest: "1.2.840.113549.1.9.16.2.5",
  fileName: "2.25.15164122438737808793471905286953962367.1",
  fileSize: "2.25.15164122438737808793471905286953962367.2",
  fileDigest: "2.25.15164122438737808793471905286953962367.3",
  p256: "1.2.840.10045.3.1.7",
};

const subtle = () => globalThis.crypto.subtle;

export function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function toBase64(buf) {
  const b = new Uint8Array(buf);
  let s = "";
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(s) {
  const bin = atob(s.replace(/\s+/g, ""));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytes(buf) {
  return buf instanceof Uint8Array ? buf : new Uint8Array(buf);
}

function ab(buf) {
  const b = bytes(buf);
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
}

export function equalBytes(a, b) {
  a = bytes(a);
  b = bytes(b);
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export async function sha256Hex(buf) {
  return hex(await subtle().digest("SHA-256", bytes(buf)));
}

// pemBlocks returns the PEM blocks of text as {type, der}.
export function pemBlocks(text) {
  const re = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;
  const out = [];
  let m;
  while ((m = re.exec(text)) !== null) out.push({ type: m[1], der: fromBase64(m[2]) });
  return out;
}

function fromBER(der, what) {
  const asn1 = asn1js.fromBER(ab(der));
  if (asn1.offset === -1) throw new Error(what + " is not DER: " + asn1.result.error);
  return asn1.result;
}

export function parseCertificate(der) {
  return new pkijs.Certificate({ schema: fromBER(der, "certificate") });
}

function commonName(name) {
  for (const tv of name.typesAndValues) if (tv.type === "2.5.4.3") return tv.value.valueBlock.value;
  return "";
}

// Describe a certificate for display.
export async function describeCertificate(cert) {
  const der = cert.toSchema(true).toBER(false);
  return {
    cn: commonName(cert.subject),
    fingerprint: await sha256Hex(der),
    notAfter: cert.notAfter.value,
    der: new Uint8Array(der),
  };
}

// importCredential reads PEM text holding a PKCS#8 ECDSA P-256 private key
// ("PRIVATE KEY") and the buyer's certificate ("CERTIFICATE"). The key is
// imported non-extractable: once in WebCrypto, script cannot read it back.
export async function importCredential(text) {
  const blocks = pemBlocks(text);
  const keyBlock = blocks.find((b) => b.type === "PRIVATE KEY");
  const certBlock = blocks.find((b) => b.type === "CERTIFICATE");
  if (blocks.some((b) => b.type === "EC PRIVATE KEY" || b.type === "ENCRYPTED PRIVATE KEY"))
    throw new Error("the key must be an unencrypted PKCS#8 \"PRIVATE KEY\" (openssl pkcs8 -topk8 -nocrypt)");
  if (!keyBlock) throw new Error("no PRIVATE KEY block (PKCS#8) in the file");
  if (!certBlock) throw new Error("no CERTIFICATE block in the file");
  const cert = parseCertificate(certBlock.der);
  const spki = cert.subjectPublicKeyInfo;
  const curve = spki.algorithm.algorithmParams && spki.algorithm.algorithmParams.valueBlock
    ? spki.algorithm.algorithmParams.valueBlock.toString() : "";
  if (spki.algorithm.algorithmId !== OID.ecPublicKey || curve !== OID.p256)
    throw new Error("the certificate's key is not ECDSA P-256");
  let key;
  try {
    key = await subtle().importKey("pkcs8", keyBlock.der, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  } catch (e) {
    throw new Error("the private key is not an ECDSA P-256 PKCS#8 key (" + e.message + ")");
  }
  // The same key agrees keys (ECDH) to open deliveries encrypted for it.
  const ecdh = await subtle().importKey("pkcs8", keyBlock.der, { name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  // The key must belong to the certificate: sign and check with the certificate's key.
  const pub = await subtle().importKey("spki", spki.toSchema().toBER(false), { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  const probe = new TextEncoder().encode("e2sgate key check");
  const sig = await subtle().sign({ name: "ECDSA", hash: "SHA-256" }, key, probe);
  if (!(await subtle().verify({ name: "ECDSA", hash: "SHA-256" }, pub, sig, probe)))
    throw new Error("the private key does not belong to the certificate");
  return { key, ecdh, cert, ...(await describeCertificate(cert)) };
}

function issuerAndSerial(cert) {
  return new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber });
}

function utcOrGeneralized(d) {
  const y = d.getUTCFullYear();
  return y >= 1950 && y < 2050 ? new asn1js.UTCTime({ valueDate: d }) : new asn1js.GeneralizedTime({ valueDate: d });
}

// signedAttributes: contentType, signingTime, messageDigest and extra, in
// DER SET OF order (sorted by encoding) so that any verifier re-encoding
// them agrees.
async function signedAttributes(content, hash, extra = []) {
  const digest = await subtle().digest(hash, bytes(content));
  const attrs = [
    new pkijs.Attribute({ type: OID.contentType, values: [new asn1js.ObjectIdentifier({ value: OID.data })] }),
    new pkijs.Attribute({ type: OID.signingTime, values: [utcOrGeneralized(new Date())] }),
    new pkijs.Attribute({ type: OID.messageDigest, values: [new asn1js.OctetString({ valueHex: digest })] }),
    ...extra,
  ];
  const enc = attrs.map((a) => new Uint8Array(a.toSchema().toBER(false)));
  const order = attrs.map((a, i) => i).sort((i, j) => {
    const x = enc[i], y = enc[j];
    for (let k = 0; k < Math.min(x.length, y.length); k++) if (x[k] !== y[k]) return x[k] - y[k];
    return x.length - y.length;
  });
  return new pkijs.SignedAndUnsignedAttributes({ type: 0, attributes: order.map((i) => attrs[i]) });
}

function newSignerInfo(cert, signedAttrs) {
  return new pkijs.SignerInfo({ version: 1, sid: issuerAndSerial(cert), signedAttrs });
}

function contentInfoDER(sd) {
  const ci = new pkijs.ContentInfo({ contentType: OID.signedData, content: sd.toSchema(true) });
  return new Uint8Array(ci.toSchema().toBER(false));
}

// signHeader is the E2s-Signature value over body: a detached SignedData,
// SHA-512, no certificates, standard base64 (as cms.SignHeader).
export async function signHeader(body, cred) {
  const sd = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: OID.data }),
    signerInfos: [newSignerInfo(cred.cert, await signedAttributes(body, "SHA-512"))],
  });
  await sd.sign(cred.key, 0, "SHA-512");
  return toBase64(contentInfoDER(sd));
}

// signRequest is the headers of a signed request (API.md "Who you are";
// api.RequestToSign): E2s-Signature over the type, method, path, query,
// the hex SHA-512 of the body, the time and a new nonce, one per line,
// under the buyer's key; E2s-Buyer names the certificate.
export async function signRequest(method, path, query, body, cred) {
  const bytes = body === undefined ? new Uint8Array(0) : typeof body === "string" ? new TextEncoder().encode(body) : body;
  const digest = hex(await crypto.subtle.digest("SHA-512", bytes));
  const time = new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const text = ["e2sgate.request.v1", method, path, query, digest, time, nonce, cred.fingerprint].join("\n");
  return {
    "E2s-Signature": await signHeader(new TextEncoder().encode(text), cred),
    "E2s-Buyer": cred.fingerprint,
    "E2s-Time": time,
    "E2s-Nonce": nonce,
  };
}

// parseSignedData reads a DER ContentInfo(SignedData) with its content.
export function parseSignedData(der) {
  const ci = new pkijs.ContentInfo({ schema: fromBER(der, "the document") });
  if (ci.contentType !== OID.signedData) throw new Error("the document is not CMS SignedData");
  const sd = new pkijs.SignedData({ schema: ci.content });
  const e = sd.encapContentInfo;
  if (e.eContentType !== OID.data || !e.eContent) throw new Error("the SignedData carries no data content");
  const content = new Uint8Array(e.eContent.getValue());
  return { sd, content };
}

// signerCertificate finds the certificate of signerInfos[i] among those
// embedded in the message.
export function signerCertificate(sd, i) {
  const sid = sd.signerInfos[i].sid;
  if (!(sid instanceof pkijs.IssuerAndSerialNumber)) return null;
  for (const c of sd.certificates || []) {
    if (c instanceof pkijs.Certificate && c.issuer.isEqual(sid.issuer) && c.serialNumber.isEqual(sid.serialNumber)) return c;
  }
  return null;
}

function certDER(cert) {
  return new Uint8Array(cert.toSchema(true).toBER(false));
}

// verifySigner checks signer i's digest and signature and that its
// certificate is byte for byte `expected` (a pkijs.Certificate), when given.
export async function verifySigner(sd, i, expected) {
  const cert = signerCertificate(sd, i);
  if (!cert) throw new Error("signer " + (i + 1) + ": certificate not in the message");
  if (expected && !equalBytes(certDER(cert), certDER(expected)))
    throw new Error("signer " + (i + 1) + " is not " + (commonName(expected.subject) || "the expected party"));
  let res;
  try {
    res = await sd.verify({ signer: i, checkChain: false, extendedMode: true });
  } catch (e) {
    throw new Error("signer " + (i + 1) + ": " + (e.message || e).toString().replace(/^Error during verification: /, ""));
  }
  if (!res.signatureVerified) throw new Error("signer " + (i + 1) + ": " + (res.message || "signature does not verify"));
  return { cert, ...(await describeCertificate(cert)), signingTime: signingTime(sd.signerInfos[i]) };
}

function signingTime(si) {
  for (const a of (si.signedAttrs && si.signedAttrs.attributes) || [])
    if (a.type === OID.signingTime) return a.values[0].toDate();
  return null;
}

// verifyCounterSignature checks the countersignature (RFC 5652 §11.4) in
// signer i's unsigned attributes, made by `expected`, over signer i's
// signature value.
export async function verifyCounterSignature(sd, i, expected) {
  const si = sd.signerInfos[i];
  const attr = ((si.unsignedAttrs && si.unsignedAttrs.attributes) || []).find((a) => a.type === OID.counterSignature);
  if (!attr) throw new Error("signer " + (i + 1) + " carries no countersignature");
  const cs = new pkijs.SignerInfo({ schema: attr.values[0] });
  const sid = cs.sid;
  if (!(sid instanceof pkijs.IssuerAndSerialNumber) || !expected.issuer.isEqual(sid.issuer) || !expected.serialNumber.isEqual(sid.serialNumber))
    throw new Error("the countersignature is not by " + commonName(expected.subject));
  const engine = pkijs.getCrypto(true);
  const hash = engine.getAlgorithmByOID(cs.digestAlgorithm.algorithmId, true, "digestAlgorithm").name;
  if (!cs.signedAttrs) throw new Error("countersignature without signed attributes");
  const md = cs.signedAttrs.attributes.find((a) => a.type === OID.messageDigest);
  const want = await subtle().digest(hash, bytes(si.signature.valueBlock.valueHexView));
  if (!md || !equalBytes(md.values[0].valueBlock.valueHexView, want))
    throw new Error("the countersignature is not over the buyer's signature");
  const signed = new Uint8Array(cs.signedAttrs.encodedValue);
  signed[0] = 0x31;
  const ok = await engine.verifyWithPublicKey(signed, cs.signature, expected.subjectPublicKeyInfo, cs.signatureAlgorithm, hash);
  if (!ok) throw new Error("the countersignature does not verify");
  return { signingTime: signingTime(cs) };
}

// accept adds the buyer's SignerInfo (SHA-256, signed attributes over the
// same content) and certificate to the offer: the acceptance, DER.
export async function accept(offerDER, cred) {
  const { sd, content } = parseSignedData(offerDER);
  if (sd.signerInfos.length !== 1) throw new Error("an offer has exactly one signature");
  sd.signerInfos.push(newSignerInfo(cred.cert, await signedAttributes(content, "SHA-256")));
  const mine = certDER(cred.cert);
  if (!(sd.certificates || []).some((c) => c instanceof pkijs.Certificate && equalBytes(certDER(c), mine))) {
    sd.certificates = sd.certificates || [];
    sd.certificates.push(cred.cert);
  }
  await sd.sign(cred.key, sd.signerInfos.length - 1, "SHA-256");
  if (sd.version < 1) sd.version = 1;
  const out = contentInfoDER(sd);
  // The merchant compares the content and its own signature byte for byte:
  // check that re-encoding changed neither.
  const back = parseSignedData(out);
  if (!equalBytes(back.content, content)) throw new Error("internal: the offer content changed while signing");
  return out;
}

// ---- delivery: open (decrypt, verify, decompress) and acknowledge ----------

function children(node, what) {
  if (!node || !node.valueBlock || !Array.isArray(node.valueBlock.value)) throw new Error(what + ": not a constructed value");
  return node.valueBlock.value;
}

function isContext(node, n) {
  return node && node.idBlock.tagClass === 3 && node.idBlock.tagNumber === n;
}

function octets(node) {
  // An OCTET STRING, primitive or (BER) constructed.
  if (node.idBlock.isConstructed) {
    const parts = node.valueBlock.value.map(octets);
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
  return new Uint8Array(node.valueBlock.valueHexView);
}

function encodeSetOf(node) {
  const der = new Uint8Array(node.toBER(false));
  der[0] = 0x31;
  return der;
}

// x963KDF derives the AES-256 key-encryption key from the ECDH secret with
// ECC-CMS-SharedInfo (RFC 5753 §7.2), SHA-256, as the merchant's side does.
async function x963KDF(z, wrapAlgDER, ukm) {
  const parts = [asn1js.fromBER(ab(wrapAlgDER)).result];
  if (ukm) parts.push(new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.OctetString({ valueHex: ab(ukm) })] }));
  parts.push(new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 2 }, value: [new asn1js.OctetString({ valueHex: new Uint8Array([0, 0, 1, 0]).buffer })] }));
  const sharedInfo = new Uint8Array(new asn1js.Sequence({ value: parts }).toBER(false));
  const buf = new Uint8Array(z.byteLength + 4 + sharedInfo.length);
  buf.set(new Uint8Array(z), 0);
  buf.set([0, 0, 0, 1], z.byteLength);
  buf.set(sharedInfo, z.byteLength + 4);
  return subtle().digest("SHA-256", buf);
}

// decryptAuthEnveloped opens AuthEnvelopedData (RFC 5083, AES-256-GCM) for
// an EC key: ephemeral-static ECDH (dhSinglePass-stdDH-sha256kdf-scheme)
// and AES-256 key wrap (RFC 5753). Returns {contentType, content}.
async function decryptAuthEnveloped(node, cred) {
  const f = children(node, "AuthEnvelopedData");
  let i = 1; // version
  if (isContext(f[i], 0)) i++; // originatorInfo
  const ris = children(f[i++], "recipientInfos");
  const eci = children(f[i++], "authEncryptedContentInfo");
  let authAttrs = null;
  if (isContext(f[i], 1)) authAttrs = f[i++];
  const mac = octets(f[i]);
  const contentType = eci[0].valueBlock.toString();
  const calg = children(eci[1], "contentEncryptionAlgorithm");
  if (calg[0].valueBlock.toString() !== OID.aes256GCM) throw new Error("the delivery is not encrypted with AES-256-GCM");
  const gcm = children(calg[1], "GCMParameters");
  const nonce = octets(gcm[0]);
  const ciphertext = eci[2] ? octets(eci[2]) : new Uint8Array(0);
  let cek = null;
  for (const ri of ris) {
    if (!isContext(ri, 1)) continue; // only KeyAgreeRecipientInfo [1]
    const k = ri.valueBlock.value; // version, originator [0], ukm [1]?, kdf, recipientEncryptedKeys
    let j = 1;
    const orig = k[j++].valueBlock.value[0]; // [0] EXPLICIT OriginatorIdentifierOrKey
    if (!isContext(orig, 1)) continue; // originatorKey [1] OriginatorPublicKey
    const point = new Uint8Array(orig.valueBlock.value[1].valueBlock.valueHexView);
    let ukm = null;
    if (isContext(k[j], 1)) ukm = octets(k[j++].valueBlock.value[0]);
    const kdf = children(k[j++], "keyEncryptionAlgorithm");
    if (kdf[0].valueBlock.toString() !== OID.ecdhSHA256KDF) continue;
    const wrapAlg = kdf[1];
    if (children(wrapAlg, "key wrap")[0].valueBlock.toString() !== OID.aes256Wrap) continue;
    for (const rek of children(k[j], "recipientEncryptedKeys")) {
      const [rid, ek] = rek.valueBlock.value;
      if (rid.idBlock.tagClass === 1) {
        const ias = new pkijs.IssuerAndSerialNumber({ schema: rid });
        if (!ias.issuer.isEqual(cred.cert.issuer) || !ias.serialNumber.isEqual(cred.cert.serialNumber)) continue;
      }
      try {
        const pub = await subtle().importKey("raw", point, { name: "ECDH", namedCurve: "P-256" }, false, []);
        const z = await subtle().deriveBits({ name: "ECDH", public: pub }, cred.ecdh, 256);
        const kekBytes = await x963KDF(z, wrapAlg.toBER(false), ukm);
        const kek = await subtle().importKey("raw", kekBytes, "AES-KW", false, ["unwrapKey"]);
        cek = await subtle().unwrapKey("raw", octets(ek), kek, "AES-KW", { name: "AES-GCM" }, false, ["decrypt"]);
        break;
      } catch (_) {
        /* not for this key; try the next */
      }
    }
    if (cek) break;
  }
  if (!cek) throw new Error("the delivery is not encrypted for your certificate");
  const sealed = new Uint8Array(ciphertext.length + mac.length);
  sealed.set(ciphertext, 0);
  sealed.set(mac, ciphertext.length);
  const params = { name: "AES-GCM", iv: nonce, tagLength: mac.length * 8 };
  if (authAttrs) params.additionalData = encodeSetOf(authAttrs);
  let content;
  try {
    content = new Uint8Array(await subtle().decrypt(params, cek, sealed));
  } catch (_) {
    throw new Error("the delivery was altered or damaged (authentication failed)");
  }
  return { contentType, content };
}

async function inflate(data) {
  const ds = new DecompressionStream("deflate"); // zlib (RFC 1950)
  const out = new Response(new Blob([data]).stream().pipeThrough(ds));
  return new Uint8Array(await out.arrayBuffer());
}

// decompress reads CompressedData (RFC 3274, zlib) of id-data.
async function decompress(der) {
  let node = fromBER(der, "CompressedData");
  let f = children(node, "CompressedData");
  if (f[0] instanceof asn1js.ObjectIdentifier) f = children(f[1].valueBlock.value[0], "CompressedData"); // in a ContentInfo
  if (children(f[1], "compressionAlgorithm")[0].valueBlock.toString() !== OID.zlib) throw new Error("unknown compression");
  const eci = children(f[2], "encapContentInfo");
  if (eci[0].valueBlock.toString() !== OID.data) throw new Error("compressed content is not data");
  return inflate(octets(eci[1].valueBlock.value[0]));
}

// openDelivery decrypts the delivery, verifies that the merchant signed it
// and decompresses it: {document, signedData (DER ContentInfo), signer}.
export async function openDelivery(der, cred, merchant) {
  const outer = fromBER(der, "the delivery");
  const ci = children(outer, "ContentInfo");
  const ct = ci[0].valueBlock.toString();
  if (ct !== OID.authEnvelopedData) throw new Error("the delivery is not AuthEnvelopedData (" + ct + ")");
  const { contentType, content } = await decryptAuthEnveloped(ci[1].valueBlock.value[0], cred);
  if (contentType !== OID.signedData) throw new Error("the encrypted content is not signed");
  let signedDER = content;
  const inner = fromBER(content, "signed delivery");
  if (!(inner.valueBlock.value[0] instanceof asn1js.ObjectIdentifier)) {
    signedDER = new Uint8Array(new pkijs.ContentInfo({ contentType: OID.signedData, content: inner }).toSchema().toBER(false));
  }
  const sci = new pkijs.ContentInfo({ schema: fromBER(signedDER, "signed delivery") });
  const sd = new pkijs.SignedData({ schema: sci.content });
  if (sd.signerInfos.length !== 1) throw new Error("the delivery carries " + sd.signerInfos.length + " signatures, want the merchant's");
  const signer = await verifySigner(sd, 0, merchant);
  const e = sd.encapContentInfo;
  let document = new Uint8Array(e.eContent.getValue());
  const compressed = e.eContentType === OID.compressedData;
  if (compressed) document = await decompress(document);
  else if (e.eContentType !== OID.data) throw new Error("unexpected signed content " + e.eContentType);
  return { document, signedData: signedDER, signer, compressed };
}

function attribute(type, value) {
  return new pkijs.Attribute({ type, values: [value] });
}

// acknowledge is the signed file acknowledgement of document, received as
// the SignedData `original` (as cms.Acknowledge writes it): SignedData
// by us over Receipt { 1, original eContentType, '', original signature }
// with msgSigDigest, fileName, fileSize and fileDigest (SHA-256).
export async function acknowledge(original, document, fileName, cred) {
  const ci = new pkijs.ContentInfo({ schema: fromBER(original, "original") });
  const osd = new pkijs.SignedData({ schema: ci.content });
  const osi = osd.signerInfos[0];
  const engine = pkijs.getCrypto(true);
  const ohash = engine.getAlgorithmByOID(osi.digestAlgorithm.algorithmId, true, "digestAlgorithm").name;
  const oattrs = new Uint8Array(osi.signedAttrs.encodedValue);
  oattrs[0] = 0x31;
  const receipt = new Uint8Array(new asn1js.Sequence({ value: [
    new asn1js.Integer({ value: 1 }),
    new asn1js.ObjectIdentifier({ value: osd.encapContentInfo.eContentType }),
    new asn1js.OctetString({ valueHex: new ArrayBuffer(0) }),
    new asn1js.OctetString({ valueHex: ab(osi.signature.valueBlock.valueHexView) }),
  ] }).toBER(false));
  const extra = [
    attribute(OID.msgSigDigest, new asn1js.OctetString({ valueHex: await subtle().digest(ohash, oattrs) })),
    attribute(OID.fileName, new asn1js.Utf8String({ value: fileName })),
    attribute(OID.fileSize, new asn1js.Integer({ value: document.length })),
    attribute(OID.fileDigest, new asn1js.Sequence({ value: [
      new pkijs.AlgorithmIdentifier({ algorithmId: OID.sha256, algorithmParams: new asn1js.Null() }).toSchema(),
      new asn1js.OctetString({ valueHex: await subtle().digest("SHA-256", bytes(document)) }),
    ] })),
  ];
  const signedAttrs = await signedAttributes(receipt, "SHA-256", extra);
  const sd = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: OID.data, eContent: new asn1js.OctetString({ valueHex: ab(receipt) }) }),
    signerInfos: [newSignerInfo(cred.cert, signedAttrs)],
    certificates: [cred.cert],
  });
  await sd.sign(cred.key, 0, "SHA-256");
  return contentInfoDER(sd);
}

// ---- a new credential made in the browser ---------------------------------

function pem(type, der) {
  const b64 = toBase64(der).replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
  return "-----BEGIN " + type + "-----\n" + b64 + "\n-----END " + type + "-----\n";
}

// newCredential makes an ECDSA P-256 key and a self-signed certificate
// naming `name` (digitalSignature, nonRepudiation, keyAgreement; client
// authentication and e-mail protection), valid for a year. It returns the
// credential file (PKCS#8 key + certificate, PEM) for the buyer to keep and
// the certificate (PEM) for the purchasing manager to register.
export async function newCredential(name) {
  const keys = await subtle().generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const cert = new pkijs.Certificate();
  cert.version = 2;
  const serial = globalThis.crypto.getRandomValues(new Uint8Array(16));
  serial[0] &= 0x7f;
  serial[0] |= 0x01;
  cert.serialNumber = new asn1js.Integer({ valueHex: serial.buffer });
  for (const n of [cert.subject, cert.issuer])
    n.typesAndValues.push(new pkijs.AttributeTypeAndValue({ type: "2.5.4.3", value: new asn1js.Utf8String({ value: name }) }));
  const now = Date.now();
  cert.notBefore.value = new Date(now - 3600 * 1000);
  cert.notAfter.value = new Date(now + 365 * 24 * 3600 * 1000);
  const keyUsage = new asn1js.BitString({ valueHex: new Uint8Array([0xc8]).buffer, unusedBits: 3 });
  const eku = new pkijs.ExtKeyUsage({ keyPurposes: ["1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.4"] });
  const bc = new pkijs.BasicConstraints({ cA: false });
  cert.extensions = [
    new pkijs.Extension({ extnID: "2.5.29.19", critical: true, extnValue: bc.toSchema().toBER(false), parsedValue: bc }),
    new pkijs.Extension({ extnID: "2.5.29.15", critical: true, extnValue: keyUsage.toBER(false), parsedValue: keyUsage }),
    new pkijs.Extension({ extnID: "2.5.29.37", critical: false, extnValue: eku.toSchema().toBER(false), parsedValue: eku }),
  ];
  await cert.subjectPublicKeyInfo.importKey(keys.publicKey);
  await cert.sign(keys.privateKey, "SHA-256");
  const certPEM = pem("CERTIFICATE", cert.toSchema(true).toBER(false));
  const keyPEM = pem("PRIVATE KEY", await subtle().exportKey("pkcs8", keys.privateKey));
  return { certPEM, file: keyPEM + certPEM };
}
