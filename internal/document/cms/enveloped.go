package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Cipher selects the content encryption.
type Cipher int

const (
	// AES256GCM writes AuthEnvelopedData with AES-256-GCM (RFC 5083, RFC 5084).
	AES256GCM Cipher = iota
	// AES256CBC writes EnvelopedData with AES-256-CBC, for older peers.
	AES256CBC
)

func (c Cipher) String() string {
	switch c {
	case AES256GCM:
		return "AES-256-GCM"
	case AES256CBC:
		return "AES-256-CBC"
	}
	return fmt.Sprintf("Cipher(%d)", int(c))
}

// EncryptOptions controls Encrypt.
type EncryptOptions struct {
	// Cipher is the content encryption; the zero value is AES256GCM.
	Cipher Cipher
	// SubjectKeyID identifies recipients by subject key identifier instead of
	// issuer and serial number.
	SubjectKeyID bool
	// Rand is the source of randomness; nil means crypto/rand.Reader.
	Rand io.Reader

	// contentType is the encrypted content's type; nil means id-data.
	contentType asn1.ObjectIdentifier
}

const (
	cekSize   = 32 // AES-256
	gcmNonce  = 12
	gcmTagLen = 16
)

// Encrypt returns a DER ContentInfo holding AuthEnvelopedData (AES-256-GCM,
// the default) or EnvelopedData (AES-256-CBC) with content encrypted for every
// recipient. RSA recipients get key transport with RSAES-OAEP, SHA-256 and
// MGF1-SHA-256 (written explicitly); EC recipients (P-256, P-384) get
// ephemeral-static ECDH, dhSinglePass-stdDH-sha256kdf-scheme with AES-256 key wrap.
func Encrypt(content []byte, recipients []*x509.Certificate, opts EncryptOptions) ([]byte, error) {
	der, err := encrypt(content, recipients, &opts)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return der, nil
}

func encrypt(content []byte, recipients []*x509.Certificate, opts *EncryptOptions) ([]byte, error) {
	k, err := newContentKey(recipients, opts)
	if err != nil {
		return nil, err
	}
	rnd, ct, ris, riVersion2, block := k.rnd, k.contentType, k.recipientInfos, k.riVersion2, k.block
	var b cryptobyte.Builder
	switch opts.Cipher {
	case AES256GCM:
		nonce := make([]byte, gcmNonce)
		if _, err := io.ReadFull(rnd, nonce); err != nil {
			return nil, fmt.Errorf("nonce: %w", err)
		}
		aead, err := cipher.NewGCMWithTagSize(block, gcmTagLen)
		if err != nil {
			return nil, err
		}
		// RFC 5083 §2.1: authAttrs MUST be present (with contentType) when the
		// content is not id-data; they are then the additional data.
		var authAttrs []byte
		var aad []byte
		if !ct.Equal(oidData) {
			authAttrs = encodeAttributes([]attribute{{typ: oidBytes(oidAttrContentType), values: [][]byte{mustMarshal(ct)}}})
			aad = setOf(authAttrs)
		}
		sealed := aead.Seal(nil, nonce, content, aad)
		ciphertext, tag := sealed[:len(content)], sealed[len(content):]
		params := gcmParams(nonce)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0)
			addSet(b, ris)
			addEncryptedContentInfo(b, ct, algorithmIdentifier{oid: oidAES256GCM, params: params}, ciphertext)
			if authAttrs != nil {
				b.AddASN1(tagC1, func(b *cryptobyte.Builder) { b.AddBytes(authAttrs) })
			}
			b.AddASN1OctetString(tag)
		})
		return contentInfo(oidAuthEnvelopedData, b.BytesOrPanic()), nil
	case AES256CBC:
		iv := make([]byte, aes.BlockSize)
		if _, err := io.ReadFull(rnd, iv); err != nil {
			return nil, fmt.Errorf("IV: %w", err)
		}
		pad := aes.BlockSize - len(content)%aes.BlockSize
		buf := make([]byte, len(content)+pad)
		copy(buf, content)
		for i := len(content); i < len(buf); i++ {
			buf[i] = byte(pad)
		}
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
		version := int64(0)
		if riVersion2 {
			version = 2
		}
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(version)
			addSet(b, ris)
			addEncryptedContentInfo(b, ct, algorithmIdentifier{oid: oidAES256CBC, params: mustMarshal(iv)}, buf)
		})
		return contentInfo(oidEnvelopedData, b.BytesOrPanic()), nil
	}
	return nil, fmt.Errorf("%w: cipher %d", ErrUnsupportedAlgorithm, opts.Cipher)
}

func setOf(content []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(content) })
	return b.BytesOrPanic()
}

// addSet writes a SET OF with the elements in DER order.
func addSet(b *cryptobyte.Builder, elems [][]byte) {
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		for _, e := range sortedDER(elems) {
			b.AddBytes(e)
		}
	})
}

func addEncryptedContentInfo(b *cryptobyte.Builder, ct asn1.ObjectIdentifier, alg algorithmIdentifier, ciphertext []byte) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(ct)
		alg.add(b)
		b.AddASN1(tagP0, func(b *cryptobyte.Builder) { b.AddBytes(ciphertext) })
	})
}

// gcmParams encodes GCMParameters (RFC 5084 §3.2) with an explicit ICV length.
func gcmParams(nonce []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1OctetString(nonce)
		b.AddASN1Int64(gcmTagLen)
	})
	return b.BytesOrPanic()
}

// recipientInfo returns the RecipientInfo for cert and whether its version
// forces EnvelopedData version 2.
func recipientInfo(cert *x509.Certificate, cek []byte, useSKI bool, rnd io.Reader) ([]byte, bool, error) {
	rid, err := certIDFor(cert, useSKI)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrNoRecipients, err)
	}
	if cert.KeyUsage != 0 {
		need := x509.KeyUsageKeyEncipherment
		if _, ok := cert.PublicKey.(*ecdsa.PublicKey); ok {
			need = x509.KeyUsageKeyAgreement
		}
		if cert.KeyUsage&need == 0 {
			return nil, false, fmt.Errorf("%w: %q may not be used for key management", ErrKeyUsage, cert.Subject)
		}
	}
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		ri, err := keyTransRecipientInfo(pub, rid, cek, rnd)
		return ri, useSKI, err
	case *ecdsa.PublicKey:
		ri, err := keyAgreeRecipientInfo(pub, rid, cek, rnd)
		return ri, true, err
	}
	return nil, false, fmt.Errorf("%w: %T", ErrUnsupportedKey, cert.PublicKey)
}

// oaepParams encodes RSAES-OAEP-params (RFC 4055 §4.1) for SHA-256 with the
// MGF1 hash written explicitly.
func oaepParams() []byte {
	sha256Alg := algorithmIdentifier{oid: oidSHA256}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tagC0, func(b *cryptobyte.Builder) { sha256Alg.add(b) })
		b.AddASN1(tagC1, func(b *cryptobyte.Builder) {
			algorithmIdentifier{oid: oidMGF1, params: marshalAlgorithm(sha256Alg)}.add(b)
		})
	})
	return b.BytesOrPanic()
}

func keyTransRecipientInfo(pub *rsa.PublicKey, rid certID, cek []byte, rnd io.Reader) ([]byte, error) {
	ek, err := rsa.EncryptOAEP(crypto.SHA256.New(), rnd, pub, cek, nil)
	if err != nil {
		return nil, fmt.Errorf("RSA-OAEP: %w", err)
	}
	version := int64(0)
	if rid.ski != nil {
		version = 2
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(version)
		rid.add(b)
		algorithmIdentifier{oid: oidRSAESOAEP, params: oaepParams()}.add(b)
		b.AddASN1OctetString(ek)
	})
	return b.Bytes()
}

// parseOAEPParams returns the label hash and MGF1 hash. A hash other than
// SHA-1 with the MGF1 hash left to its SHA-1 default is refused with
// ErrMissingMGF1: it is what broken writers produce, and guessing either way
// is wrong for some peer.
func parseOAEPParams(params []byte) (crypto.Hash, crypto.Hash, error) {
	if params == nil || bytes.Equal(params, asn1Null) {
		return crypto.SHA1, crypto.SHA1, nil
	}
	s := cryptobyte.String(params)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return 0, 0, fmt.Errorf("%w: RSAES-OAEP parameters", ErrMalformed)
	}
	h, mgf, hasMGF, err := readHashParams(&seq, "OAEP")
	if err != nil {
		return 0, 0, err
	}
	if seq.PeekASN1Tag(tagC2) {
		var e cryptobyte.String
		var a algorithmIdentifier
		if !seq.ReadASN1(&e, tagC2) || !readAlgorithmIdentifier(&e, &a) || !a.oid.Equal(oidPSpecified) {
			return 0, 0, fmt.Errorf("%w: OAEP pSourceAlgorithm", ErrMalformed)
		}
		ps := cryptobyte.String(a.params)
		var label cryptobyte.String
		if !ps.ReadASN1(&label, cbasn1.OCTET_STRING) || len(label) != 0 {
			return 0, 0, fmt.Errorf("%w: OAEP label", ErrUnsupportedAlgorithm)
		}
	}
	if !seq.Empty() {
		return 0, 0, fmt.Errorf("%w: RSAES-OAEP parameters", ErrMalformed)
	}
	if h != crypto.SHA1 && !hasMGF {
		return 0, 0, fmt.Errorf("%w: hash %v", ErrMissingMGF1, h)
	}
	return h, mgf, nil
}

// KeyAgreer is an EC private key usable for ECDH, as *ecdh.PrivateKey is.
// Implement it to keep the key in a token. Public must return an
// *ecdh.PublicKey or *ecdsa.PublicKey.
type KeyAgreer interface {
	Public() crypto.PublicKey
	ECDH(remote *ecdh.PublicKey) ([]byte, error)
}

// ecdsaAgreer adapts *ecdsa.PrivateKey to KeyAgreer.
type ecdsaAgreer struct{ k *ecdh.PrivateKey }

func (a ecdsaAgreer) Public() crypto.PublicKey                    { return a.k.Public() }
func (a ecdsaAgreer) ECDH(remote *ecdh.PublicKey) ([]byte, error) { return a.k.ECDH(remote) }

// kdfHash maps the dhSinglePass-stdDH-*kdf-scheme OIDs to their hash.
func kdfHash(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	switch {
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 2}):
		return crypto.SHA1, true
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 1, 11, 0}):
		return crypto.SHA224, true
	case oid.Equal(oidECDHStdSHA256KDF):
		return crypto.SHA256, true
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 1, 11, 2}):
		return crypto.SHA384, true
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 132, 1, 11, 3}):
		return crypto.SHA512, true
	}
	return 0, false
}

func wrapKeySize(oid asn1.ObjectIdentifier) (int, bool) {
	switch {
	case oid.Equal(oidAES128Wrap):
		return 16, true
	case oid.Equal(oidAES192Wrap):
		return 24, true
	case oid.Equal(oidAES256Wrap):
		return 32, true
	}
	return 0, false
}

// x963KDF derives size bytes from the shared secret as ANSI X9.63 (SEC 1
// §3.6.1) with ECC-CMS-SharedInfo (RFC 5753 §7.2).
func x963KDF(h crypto.Hash, z []byte, wrapAlg algorithmIdentifier, ukm []byte, size int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		wrapAlg.add(b)
		if ukm != nil {
			b.AddASN1(tagC0, func(b *cryptobyte.Builder) { b.AddASN1OctetString(ukm) })
		}
		b.AddASN1(tagC2, func(b *cryptobyte.Builder) {
			bits := uint32(size * 8)
			b.AddASN1OctetString([]byte{byte(bits >> 24), byte(bits >> 16), byte(bits >> 8), byte(bits)})
		})
	})
	sharedInfo := b.BytesOrPanic()
	var out []byte
	for counter := uint32(1); len(out) < size; counter++ {
		w := h.New()
		w.Write(z)
		w.Write([]byte{byte(counter >> 24), byte(counter >> 16), byte(counter >> 8), byte(counter)})
		w.Write(sharedInfo)
		out = w.Sum(out)
	}
	return out[:size]
}

func keyAgreeRecipientInfo(pub *ecdsa.PublicKey, rid certID, cek []byte, rnd io.Reader) ([]byte, error) {
	static, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
	}
	eph, err := static.Curve().GenerateKey(rnd)
	if err != nil {
		return nil, fmt.Errorf("ephemeral key: %w", err)
	}
	z, err := eph.ECDH(static)
	if err != nil {
		return nil, fmt.Errorf("ECDH: %w", err)
	}
	wrapAlg := algorithmIdentifier{oid: oidAES256Wrap}
	kek := x963KDF(crypto.SHA256, z, wrapAlg, nil, 32)
	wrapped, err := aesKeyWrap(kek, cek)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(tagC1, func(b *cryptobyte.Builder) { // [1] KeyAgreeRecipientInfo
		b.AddASN1Int64(3)
		b.AddASN1(tagC0, func(b *cryptobyte.Builder) { // originator [0] EXPLICIT
			b.AddASN1(tagC1, func(b *cryptobyte.Builder) { // originatorKey [1] IMPLICIT
				algorithmIdentifier{oid: oidECPublicKey}.add(b)
				b.AddASN1BitString(eph.PublicKey().Bytes())
			})
		})
		algorithmIdentifier{oid: oidECDHStdSHA256KDF, params: marshalAlgorithm(wrapAlg)}.add(b)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // RecipientEncryptedKeys
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if rid.issuerSerial != nil {
					rid.issuerSerial.add(b)
				} else {
					b.AddASN1(tagC0, func(b *cryptobyte.Builder) { // rKeyId [0] IMPLICIT RecipientKeyIdentifier
						b.AddASN1OctetString(rid.ski)
					})
				}
				b.AddASN1OctetString(wrapped)
			})
		})
	})
	return b.Bytes()
}

// envelope is a parsed EnvelopedData or AuthEnvelopedData.
type envelope struct {
	auth        bool
	ris         []cryptobyte.String // each RecipientInfo element
	contentType asn1.ObjectIdentifier
	alg         algorithmIdentifier
	ciphertext  []byte
	authAttrs   []byte // content octets, nil when absent
	mac         []byte
}

func parseEnvelope(der []byte) (*envelope, error) {
	typ, inner, err := parseContentInfo(der)
	if err != nil {
		return nil, err
	}
	env := new(envelope)
	switch {
	case typ.Equal(oidEnvelopedData):
	case typ.Equal(oidAuthEnvelopedData):
		env.auth = true
	default:
		return nil, fmt.Errorf("%w: %v is not (Auth)EnvelopedData", ErrUnexpectedContentType, typ)
	}
	s := cryptobyte.String(inner)
	var seq, set, eci cryptobyte.String
	var version int64
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() || !seq.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) {
		return nil, fmt.Errorf("%w: EnvelopedData header", ErrMalformed)
	}
	if seq.PeekASN1Tag(tagC0) { // originatorInfo: not needed for decryption
		if !seq.SkipASN1(tagC0) {
			return nil, fmt.Errorf("%w: originatorInfo", ErrMalformed)
		}
	}
	if !seq.ReadASN1(&set, cbasn1.SET) {
		return nil, fmt.Errorf("%w: recipientInfos", ErrMalformed)
	}
	for !set.Empty() {
		var ri cryptobyte.String
		if !set.ReadAnyASN1Element(&ri, nil) {
			return nil, fmt.Errorf("%w: recipientInfo", ErrMalformed)
		}
		env.ris = append(env.ris, ri)
	}
	if !seq.ReadASN1(&eci, cbasn1.SEQUENCE) || !eci.ReadASN1ObjectIdentifier(&env.contentType) ||
		!readAlgorithmIdentifier(&eci, &env.alg) {
		return nil, fmt.Errorf("%w: EncryptedContentInfo", ErrMalformed)
	}
	switch {
	case eci.PeekASN1Tag(tagP0):
		var c cryptobyte.String
		if !eci.ReadASN1(&c, tagP0) {
			return nil, fmt.Errorf("%w: encryptedContent", ErrMalformed)
		}
		env.ciphertext = []byte(c)
	case eci.PeekASN1Tag(tagC0): // BER constructed form, chunks already made DER
		var c cryptobyte.String
		if !eci.ReadASN1(&c, tagC0) {
			return nil, fmt.Errorf("%w: encryptedContent", ErrMalformed)
		}
		if env.ciphertext, err = concatOctets(c); err != nil {
			return nil, fmt.Errorf("%w: encryptedContent: %v", ErrMalformed, err)
		}
	default:
		return nil, fmt.Errorf("%w: no encryptedContent", ErrMalformed)
	}
	if !eci.Empty() {
		return nil, fmt.Errorf("%w: EncryptedContentInfo", ErrMalformed)
	}
	if env.auth {
		if seq.PeekASN1Tag(tagC1) {
			var a cryptobyte.String
			if !seq.ReadASN1(&a, tagC1) {
				return nil, fmt.Errorf("%w: authAttrs", ErrMalformed)
			}
			env.authAttrs = slices.Clone([]byte(a))
			if env.authAttrs == nil {
				env.authAttrs = []byte{}
			}
		}
		var mac cryptobyte.String
		if !seq.ReadASN1(&mac, cbasn1.OCTET_STRING) {
			return nil, fmt.Errorf("%w: mac", ErrMalformed)
		}
		env.mac = []byte(mac)
		if seq.PeekASN1Tag(tagC2) && !seq.SkipASN1(tagC2) {
			return nil, fmt.Errorf("%w: unauthAttrs", ErrMalformed)
		}
	} else if seq.PeekASN1Tag(tagC1) && !seq.SkipASN1(tagC1) {
		return nil, fmt.Errorf("%w: unprotectedAttrs", ErrMalformed)
	}
	if !seq.Empty() {
		return nil, fmt.Errorf("%w: trailing EnvelopedData fields", ErrMalformed)
	}
	if !env.contentType.Equal(oidData) && env.auth && env.authAttrs == nil {
		return nil, fmt.Errorf("%w: AuthEnvelopedData of %v without authAttrs", ErrMalformed, env.contentType)
	}
	return env, nil
}

// Decrypt decrypts a DER or BER ContentInfo holding EnvelopedData or
// AuthEnvelopedData and returns the content. key is the recipient's private
// key: a crypto.Decrypter for RSA (any implementation, e.g. a token), or a
// KeyAgreer, *ecdh.PrivateKey or *ecdsa.PrivateKey for ECDH. cert is the
// recipient's certificate, used to pick its RecipientInfo; it may be nil for
// RSA keys, in which case every key-transport RecipientInfo is tried.
//
// The encrypted content must be id-data; nested messages (a signature
// inside, as Protect writes) are refused with ErrUnexpectedContentType so
// that their inner structure is never mistaken for the document: use Open.
func Decrypt(der []byte, cert *x509.Certificate, key crypto.PrivateKey) ([]byte, error) {
	ct, content, err := decrypt(der, cert, key)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	if !ct.Equal(oidData) {
		return nil, fmt.Errorf("decrypt: %w: encrypted %v; use Open", ErrUnexpectedContentType, ct)
	}
	return content, nil
}

// decrypt returns the encrypted content's type and the content.
func decrypt(der []byte, cert *x509.Certificate, key crypto.PrivateKey) (asn1.ObjectIdentifier, []byte, error) {
	env, err := parseEnvelope(der)
	if err != nil {
		return nil, nil, err
	}
	cek, err := env.recoverKey(cert, key)
	if err != nil {
		return nil, nil, err
	}
	content, err := env.decryptContent(cek)
	if err != nil {
		return nil, nil, err
	}
	return env.contentType, content, nil
}

// recoverKey finds the RecipientInfo for cert/key and recovers the CEK.
func (env *envelope) recoverKey(cert *x509.Certificate, key crypto.PrivateKey) ([]byte, error) {
	var agreer KeyAgreer
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		ek, err := k.ECDH()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
		}
		agreer = ecdsaAgreer{ek}
	case KeyAgreer:
		agreer = k
	}
	decrypter, _ := key.(crypto.Decrypter)
	if agreer == nil && decrypter == nil {
		return nil, fmt.Errorf("%w: %T is neither crypto.Decrypter nor KeyAgreer", ErrUnsupportedKey, key)
	}
	if agreer != nil && cert == nil {
		return nil, fmt.Errorf("%w: key agreement needs the recipient certificate", ErrNotRecipient)
	}
	var lastErr error = ErrNotRecipient
	for _, ri := range env.ris {
		switch {
		case ri.PeekASN1Tag(cbasn1.SEQUENCE) && decrypter != nil: // KeyTransRecipientInfo
			cek, err := keyTransDecrypt(ri, cert, decrypter)
			if err == errNotForUs {
				continue
			}
			if err != nil {
				lastErr = err
				if cert == nil {
					continue
				}
				return nil, err
			}
			return cek, nil
		case ri.PeekASN1Tag(tagC1) && agreer != nil: // KeyAgreeRecipientInfo
			cek, err := keyAgreeDecrypt(ri, cert, agreer)
			if err == errNotForUs {
				continue
			}
			if err != nil {
				return nil, err
			}
			return cek, nil
		}
	}
	return nil, lastErr
}

var errNotForUs = fmt.Errorf("not addressed to this recipient")

func keyTransDecrypt(ri cryptobyte.String, cert *x509.Certificate, key crypto.Decrypter) ([]byte, error) {
	var seq, ek cryptobyte.String
	var version int64
	var rid certID
	var alg algorithmIdentifier
	if !ri.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) ||
		!readCertID(&seq, &rid) || !readAlgorithmIdentifier(&seq, &alg) ||
		!seq.ReadASN1(&ek, cbasn1.OCTET_STRING) || !seq.Empty() {
		return nil, fmt.Errorf("%w: KeyTransRecipientInfo", ErrMalformed)
	}
	if version != 0 && version != 2 { // RFC 5652 §6.2.1
		return nil, fmt.Errorf("%w: KeyTransRecipientInfo version %d", ErrMalformed, version)
	}
	if cert != nil && !rid.matches(cert) {
		return nil, errNotForUs
	}
	if _, ok := key.Public().(*rsa.PublicKey); !ok {
		return nil, errNotForUs
	}
	switch {
	case alg.oid.Equal(oidRSAESOAEP):
		h, mgf, err := parseOAEPParams(alg.params)
		if err != nil {
			return nil, err
		}
		cek, err := key.Decrypt(nil, ek, &rsa.OAEPOptions{Hash: h, MGFHash: mgf})
		if err != nil {
			return nil, fmt.Errorf("%w: RSA-OAEP: %v", ErrDecrypt, err)
		}
		return cek, nil
	case alg.oid.Equal(oidRSAEncryption):
		// PKCS#1 v1.5, read for old messages only. On a padding error the
		// session-key option yields a random key, so the failure shows only
		// as a content decryption error (no padding oracle).
		cek, err := key.Decrypt(rand.Reader, ek, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: cekSize})
		if err != nil {
			return nil, fmt.Errorf("%w: RSA PKCS#1 v1.5: %v", ErrDecrypt, err)
		}
		return cek, nil
	}
	return nil, fmt.Errorf("%w: key transport %v", ErrUnsupportedAlgorithm, alg.oid)
}

func keyAgreeDecrypt(ri cryptobyte.String, cert *x509.Certificate, key KeyAgreer) ([]byte, error) {
	var kari, orig, origKey, reks cryptobyte.String
	var version int64
	if !ri.ReadASN1(&kari, tagC1) || !kari.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) ||
		!kari.ReadASN1(&orig, tagC0) || version != 3 {
		return nil, fmt.Errorf("%w: KeyAgreeRecipientInfo", ErrMalformed)
	}
	var ephAlg algorithmIdentifier
	var ephBits asn1.BitString
	if !orig.ReadASN1(&origKey, tagC1) || !readAlgorithmIdentifier(&origKey, &ephAlg) ||
		!origKey.ReadASN1BitString(&ephBits) || !origKey.Empty() || ephBits.BitLength%8 != 0 {
		return nil, fmt.Errorf("%w: only originatorKey is supported", ErrUnsupportedAlgorithm)
	}
	var ukm []byte
	if kari.PeekASN1Tag(tagC1) {
		var e, u cryptobyte.String
		if !kari.ReadASN1(&e, tagC1) || !e.ReadASN1(&u, cbasn1.OCTET_STRING) {
			return nil, fmt.Errorf("%w: ukm", ErrMalformed)
		}
		ukm = []byte(u)
	}
	var kdfAlg, wrapAlg algorithmIdentifier
	if !readAlgorithmIdentifier(&kari, &kdfAlg) || !kari.ReadASN1(&reks, cbasn1.SEQUENCE) || !kari.Empty() {
		return nil, fmt.Errorf("%w: KeyAgreeRecipientInfo", ErrMalformed)
	}
	var wrapped []byte
	for !reks.Empty() {
		var rek, ek cryptobyte.String
		var rid certID
		if !reks.ReadASN1(&rek, cbasn1.SEQUENCE) {
			return nil, fmt.Errorf("%w: RecipientEncryptedKey", ErrMalformed)
		}
		if rek.PeekASN1Tag(tagC0) {
			var rkid, ski cryptobyte.String
			if !rek.ReadASN1(&rkid, tagC0) || !rkid.ReadASN1(&ski, cbasn1.OCTET_STRING) {
				return nil, fmt.Errorf("%w: rKeyId", ErrMalformed)
			}
			rid.ski = []byte(ski)
		} else {
			rid.issuerSerial = new(issuerAndSerial)
			if !readIssuerAndSerial(&rek, rid.issuerSerial) {
				return nil, fmt.Errorf("%w: RecipientEncryptedKey rid", ErrMalformed)
			}
		}
		if !rek.ReadASN1(&ek, cbasn1.OCTET_STRING) || !rek.Empty() {
			return nil, fmt.Errorf("%w: RecipientEncryptedKey", ErrMalformed)
		}
		if rid.matches(cert) {
			wrapped = []byte(ek)
			break
		}
	}
	if wrapped == nil {
		return nil, errNotForUs
	}
	h, ok := kdfHash(kdfAlg.oid)
	if !ok {
		return nil, fmt.Errorf("%w: key agreement %v", ErrUnsupportedAlgorithm, kdfAlg.oid)
	}
	ps := cryptobyte.String(kdfAlg.params)
	if !readAlgorithmIdentifier(&ps, &wrapAlg) || !ps.Empty() {
		return nil, fmt.Errorf("%w: key wrap algorithm", ErrMalformed)
	}
	kekSize, ok := wrapKeySize(wrapAlg.oid)
	if !ok {
		return nil, fmt.Errorf("%w: key wrap %v", ErrUnsupportedAlgorithm, wrapAlg.oid)
	}
	if !ephAlg.oid.Equal(oidECPublicKey) {
		return nil, fmt.Errorf("%w: originator key %v", ErrUnsupportedAlgorithm, ephAlg.oid)
	}
	var curve ecdh.Curve
	switch pub := key.Public().(type) {
	case *ecdh.PublicKey:
		curve = pub.Curve()
	case *ecdsa.PublicKey:
		k, err := pub.ECDH()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnsupportedKey, err)
		}
		curve = k.Curve()
	default:
		return nil, fmt.Errorf("%w: key agreement with %T", ErrUnsupportedKey, pub)
	}
	eph, err := curve.NewPublicKey(ephBits.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: originator key: %v", ErrMalformed, err)
	}
	z, err := key.ECDH(eph)
	if err != nil {
		return nil, fmt.Errorf("%w: ECDH: %v", ErrDecrypt, err)
	}
	// The KDF's keyInfo is the wrap algorithm as written by the sender.
	kek := x963KDF(h, z, wrapAlg, ukm, kekSize)
	cek, err := aesKeyUnwrap(kek, wrapped)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	return cek, nil
}

func (env *envelope) decryptContent(cek []byte) ([]byte, error) {
	switch {
	case env.alg.oid.Equal(oidAES256GCM):
		if !env.auth {
			return nil, fmt.Errorf("%w: GCM in EnvelopedData", ErrUnsupportedAlgorithm)
		}
		nonce, tagLen, err := parseGCMParams(env.alg.params)
		if err != nil {
			return nil, err
		}
		if len(env.mac) != tagLen {
			return nil, fmt.Errorf("%w: mac length %d, want %d", ErrMalformed, len(env.mac), tagLen)
		}
		block, err := aes.NewCipher(cek)
		if err != nil {
			return nil, fmt.Errorf("%w: content-encryption key: %v", ErrDecrypt, err)
		}
		aead, err := cipher.NewGCMWithTagSize(block, tagLen)
		if err != nil {
			return nil, fmt.Errorf("%w: GCM: %v", ErrUnsupportedAlgorithm, err)
		}
		if len(nonce) != aead.NonceSize() {
			if aead, err = cipher.NewGCMWithNonceSize(block, len(nonce)); err != nil || tagLen != 16 {
				return nil, fmt.Errorf("%w: GCM nonce length %d", ErrUnsupportedAlgorithm, len(nonce))
			}
		}
		var aad []byte
		if env.authAttrs != nil {
			aad = setOf(env.authAttrs)
		}
		sealed := append(slices.Clone(env.ciphertext), env.mac...)
		content, err := aead.Open(sealed[:0], nonce, sealed, aad)
		if err != nil {
			return nil, fmt.Errorf("%w: authentication tag mismatch", ErrDecrypt)
		}
		return content, nil
	case env.alg.oid.Equal(oidAES256CBC):
		if env.auth {
			return nil, fmt.Errorf("%w: CBC in AuthEnvelopedData", ErrUnsupportedAlgorithm)
		}
		var iv []byte
		if rest, err := asn1.Unmarshal(env.alg.params, &iv); err != nil || len(rest) != 0 || len(iv) != aes.BlockSize {
			return nil, fmt.Errorf("%w: CBC IV", ErrMalformed)
		}
		if len(env.ciphertext) == 0 || len(env.ciphertext)%aes.BlockSize != 0 {
			return nil, fmt.Errorf("%w: ciphertext length", ErrDecrypt)
		}
		block, err := aes.NewCipher(cek)
		if err != nil {
			return nil, fmt.Errorf("%w: content-encryption key: %v", ErrDecrypt, err)
		}
		buf := slices.Clone(env.ciphertext)
		cipher.NewCBCDecrypter(block, iv).CryptBlocks(buf, buf)
		pad := int(buf[len(buf)-1])
		if pad == 0 || pad > aes.BlockSize {
			return nil, fmt.Errorf("%w: padding", ErrDecrypt)
		}
		for _, c := range buf[len(buf)-pad:] {
			if int(c) != pad {
				return nil, fmt.Errorf("%w: padding", ErrDecrypt)
			}
		}
		return buf[:len(buf)-pad], nil
	}
	return nil, fmt.Errorf("%w: content encryption %v", ErrUnsupportedAlgorithm, env.alg.oid)
}

func parseGCMParams(params []byte) ([]byte, int, error) {
	s := cryptobyte.String(params)
	var seq, nonce cryptobyte.String
	tagLen := int64(12)
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() || !seq.ReadASN1(&nonce, cbasn1.OCTET_STRING) {
		return nil, 0, fmt.Errorf("%w: GCM parameters", ErrMalformed)
	}
	if !seq.Empty() && (!seq.ReadASN1Integer(&tagLen) || !seq.Empty()) {
		return nil, 0, fmt.Errorf("%w: GCM parameters", ErrMalformed)
	}
	if tagLen < 12 || tagLen > 16 || len(nonce) == 0 {
		return nil, 0, fmt.Errorf("%w: GCM tag length %d", ErrUnsupportedAlgorithm, tagLen)
	}
	return []byte(nonce), int(tagLen), nil
}

// contentKey is what encrypting for recipients starts with, whole or
// streamed: a fresh content-encryption key, its AES cipher and a
// RecipientInfo for each recipient.
type contentKey struct {
	rnd            io.Reader
	contentType    asn1.ObjectIdentifier
	cek            []byte
	block          cipher.Block
	recipientInfos [][]byte
	riVersion2     bool // a RecipientInfo needs EnvelopedData version 2
}

func newContentKey(recipients []*x509.Certificate, opts *EncryptOptions) (*contentKey, error) {
	if len(recipients) == 0 {
		return nil, ErrNoRecipients
	}
	k := &contentKey{rnd: opts.Rand, contentType: opts.contentType, cek: make([]byte, cekSize)}
	if k.rnd == nil {
		k.rnd = rand.Reader
	}
	if k.contentType == nil {
		k.contentType = oidData
	}
	if _, err := io.ReadFull(k.rnd, k.cek); err != nil {
		return nil, fmt.Errorf("content-encryption key: %w", err)
	}
	for _, cert := range recipients {
		ri, v2, err := recipientInfo(cert, k.cek, opts.SubjectKeyID, k.rnd)
		if err != nil {
			return nil, fmt.Errorf("recipient %q: %w", cert.Subject, err)
		}
		k.riVersion2 = k.riVersion2 || v2
		k.recipientInfos = append(k.recipientInfos, ri)
	}
	var err error
	if k.block, err = aes.NewCipher(k.cek); err != nil {
		return nil, err
	}
	return k, nil
}
