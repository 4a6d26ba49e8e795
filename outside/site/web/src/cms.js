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
  // The key must belong to the certificate: sign and check with the certificate's key.
  const pub = await subtle().importKey("spki", spki.toSchema().toBER(false), { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  const probe = new TextEncoder().encode("e2sgate key check");
  const sig = await subtle().sign({ name: "ECDSA", hash: "SHA-256" }, key, probe);
  if (!(await subtle().verify({ name: "ECDSA", hash: "SHA-256" }, pub, sig, probe)))
    throw new Error("the private key does not belong to the certificate");
  return { key, cert, ...(await describeCertificate(cert)) };
}

function issuerAndSerial(cert) {
  return new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber });
}

function utcOrGeneralized(d) {
  const y = d.getUTCFullYear();
  return y >= 1950 && y < 2050 ? new asn1js.UTCTime({ valueDate: d }) : new asn1js.GeneralizedTime({ valueDate: d });
}

// signedAttributes: contentType, signingTime, messageDigest, in DER SET OF
// order (sorted by encoding) so that any verifier re-encoding them agrees.
async function signedAttributes(content, hash) {
  const digest = await subtle().digest(hash, bytes(content));
  const attrs = [
    new pkijs.Attribute({ type: OID.contentType, values: [new asn1js.ObjectIdentifier({ value: OID.data })] }),
    new pkijs.Attribute({ type: OID.signingTime, values: [utcOrGeneralized(new Date())] }),
    new pkijs.Attribute({ type: OID.messageDigest, values: [new asn1js.OctetString({ valueHex: digest })] }),
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
  const res = await sd.verify({ signer: i, checkChain: false, extendedMode: true });
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
