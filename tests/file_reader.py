#!/usr/bin/python3
"""file_reader.py - open a keyway file (docs/file-format.md) without keyway.

    KEYWAY_MASTER_KEY=<64 hex digits> file_reader.py FILE
    KEYWAY_PASSPHRASE=<passphrase>    file_reader.py FILE

prints one line per record: scope, owner ("-" for none), provider, name,
active, created, rotated, use count, last used, the key.  Needs Debian's
python3-cryptography, and python3-argon2 for an Argon2id passphrase.
"""
import hashlib, hmac, os, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"\x89KEYWAY\n"

def master_key(header):
    kdf, p1, p2, p3 = header[10], *struct.unpack(">III", header[12:24])
    salt = header[24:40]
    if "KEYWAY_MASTER_KEY" in os.environ:
        return bytes.fromhex(os.environ["KEYWAY_MASTER_KEY"])
    pw = os.environb[b"KEYWAY_PASSPHRASE"]
    if kdf == 1:
        from argon2.low_level import hash_secret_raw, Type
        return hash_secret_raw(pw, salt, time_cost=p1, memory_cost=p2,
                               parallelism=p3, hash_len=32, type=Type.ID,
                               version=19)
    if kdf == 2:
        return hashlib.pbkdf2_hmac("sha256", pw, salt, p1, 32)
    sys.exit("the file's key is not derived from a passphrase")

def unseal(key, sealed, store, scope, owner, provider):
    def field(s):
        b = s.encode()
        return struct.pack(">I", len(b)) + b
    aad = (b"keyway seal v1" + sealed[:21] + field(store) + field(scope)
           + field(owner or "") + field(provider))
    return AESGCM(key).decrypt(sealed[9:21], sealed[21:], aad)

def main(path):
    data = open(path, "rb").read()
    header, envelope = data[:64], data[64:]
    if header[:8] != MAGIC or struct.unpack(">H", header[8:10])[0] != 1:
        sys.exit(f"{path}: not a keyway file of version 1")
    key = master_key(header)
    key_id = hmac.new(key, b"keyway master key id v1", "sha256").digest()[:8]
    if envelope[1:9] != key_id:
        sys.exit(f"{path}: sealed under master key {envelope[1:9].hex()}, "
                 f"not {key_id.hex()}")
    plain = unseal(key, envelope, header.hex(), "none", None, "")
    file_id = header[40:56].hex()
    (count,), at = struct.unpack(">I", plain[:4]), 4
    for _ in range(count):
        scope, flags, lo, lp, ln, created, rotated, uses, last = \
            struct.unpack(">BBHHHqqQq", plain[at:at + 40])
        at += 40
        owner, provider, name = (plain[at:at + lo].decode(),
                                 plain[at + lo:at + lo + lp].decode(),
                                 plain[at + lo + lp:at + lo + lp + ln].decode())
        at += lo + lp + ln
        (slen,) = struct.unpack(">I", plain[at:at + 4])
        sealed = plain[at + 4:at + 4 + slen]
        at += 4 + slen
        word = {1: "user", 2: "org", 3: "system"}[scope]
        value = unseal(key, sealed, file_id, word, owner, provider).decode()
        print(word, owner or "-", provider, name or "-",
              "active" if flags & 1 else "disabled", created, rotated, uses,
              last, value)

if __name__ == "__main__":
    main(sys.argv[1])
