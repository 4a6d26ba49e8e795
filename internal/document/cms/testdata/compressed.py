#!/usr/bin/env python3
"""Independent CMS CompressedData (RFC 3274) codec for interop tests.

Uses only the Python standard library (zlib and a hand-written DER reader),
so it shares no code with the Go implementation.

  compressed.py make < content > compressed.der
  compressed.py read < compressed.der > content
"""
import sys
import zlib

OID_COMPRESSED = bytes.fromhex("060b2a864886f70d0109100109")  # 1.2.840.113549.1.9.16.1.9
OID_ZLIB = bytes.fromhex("060b2a864886f70d0109100308")        # 1.2.840.113549.1.9.16.3.8
OID_DATA = bytes.fromhex("06092a864886f70d010701")            # 1.2.840.113549.1.7.1


def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + length + body


def read(buf, want):
    tag = buf[0]
    if tag != want:
        raise ValueError("tag %#x, want %#x" % (tag, want))
    n = buf[1]
    p = 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[2:2 + k], "big")
        p += k
    return buf[p:p + n], buf[p + n:]


def make(content):
    encap = tlv(0x30, OID_DATA + tlv(0xA0, tlv(0x04, zlib.compress(content, 9))))
    cd = tlv(0x30, bytes([0x02, 0x01, 0x00]) + tlv(0x30, OID_ZLIB) + encap)
    return tlv(0x30, OID_COMPRESSED + tlv(0xA0, cd))


def parse(der):
    ci, rest = read(der, 0x30)
    assert not rest
    assert ci.startswith(OID_COMPRESSED), "not CompressedData"
    explicit, _ = read(ci[len(OID_COMPRESSED):], 0xA0)
    cd, _ = read(explicit, 0x30)
    version, cd = read(cd, 0x02)
    assert version == b"\x00"
    alg, cd = read(cd, 0x30)
    assert alg == OID_ZLIB, "not zlib"
    encap, _ = read(cd, 0x30)
    assert encap.startswith(OID_DATA)
    explicit, _ = read(encap[len(OID_DATA):], 0xA0)
    data, _ = read(explicit, 0x04)
    return zlib.decompress(data)


if __name__ == "__main__":
    src = sys.stdin.buffer.read()
    out = make(src) if sys.argv[1] == "make" else parse(src)
    sys.stdout.buffer.write(out)
