#!/usr/bin/env python3
"""Regenerates the seeds of tests/fuzz/corpus/snapshot (fuzz_snapshot).

A keyring database in the store's schema (migration 1, read from
kms/src/sqlite_store.cpp) with 512-byte pages, so that a whole image fits the fuzzer's 4 KiB inputs:
one key with two versions, their KEKs wrapped (AES-KWP, RFC 5649) under the
fixed root key of snapshot_fuzz.cpp (32 bytes of 0x42). Seeds: that image (the
harness builds and verifies a snapshot around it), the snapshot file made of
it (magic line, manifest, image, with correct digests), its manifest line,
a truncated snapshot, and the snapshot and manifest line of the same image
as a snapshot of etcd (storage etcd, etcd_revision); the same key in a store
with a keyring key (schema 2: the KEKs wrapped under a keyring key of 32 x
0x24, itself wrapped under the root), and a tokens section (tokens.db, its
schema read from daemon/src/admin_token_db.cpp) with two tokens.
Run from the checkout root: python3 tests/fuzz/seeds/snapshot_seeds.py
"""
import hashlib
import json
import os
import re
import sqlite3
import tempfile

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

OUT = "tests/fuzz/corpus/snapshot"
ROOT = bytes([0x42]) * 32
STORE_SOURCE = "kms/src/sqlite_store.cpp"
TOKENS_SOURCE = "daemon/src/admin_token_db.cpp"
KEYRING_KEY = bytes([0x24]) * 32


def schema(migrations=1):
    """The store's first `migrations` migrations, read from its source (so the seeds follow it)."""
    with open(STORE_SOURCE) as f:
        text = f.read()
    return "".join(re.findall(r'R"sql\((.*?)\)sql"', text, re.S)[:migrations])


def tokens_schema():
    """The tokens table, read from the daemon's source (C string pieces joined)."""
    with open(TOKENS_SOURCE) as f:
        text = f.read()
    block = re.search(r'kSchema =(.*?);\n', text, re.S).group(1)
    return "".join(re.findall(r'"(.*?)"', block))


def kcv(key):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (enc.update(bytes(16)) + enc.finalize())[:3].hex()


def image(keyring_key=False):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.db")
        db = sqlite3.connect(path)
        db.execute("PRAGMA page_size=512")
        db.executescript(schema(2 if keyring_key else 1))
        db.execute("PRAGMA user_version=%d" % (2 if keyring_key else 1))
        db.execute("INSERT INTO keys VALUES ('fuzz', 'aes256-gcm96', 0, 1000, 1, 0, 0, 0)")
        wrapper, tag = ROOT, kcv(ROOT)
        if keyring_key:
            db.execute("INSERT INTO keyring_keys VALUES (1, 1000, ?, ?, ?)",
                       (aes_key_wrap_with_padding(ROOT, KEYRING_KEY), kcv(ROOT), kcv(KEYRING_KEY)))
            wrapper, tag = KEYRING_KEY, "kk1:" + kcv(KEYRING_KEY)
        for v in (1, 2):
            kek = bytes([v]) * 32
            db.execute("INSERT INTO key_versions VALUES ('fuzz', ?, ?, ?, ?)",
                       (v, 1000 + v, aes_key_wrap_with_padding(wrapper, kek), tag))
        db.commit()
        db.execute("VACUUM")
        db.close()
        with open(path, "rb") as f:
            return f.read()


def tokens_image():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.db")
        db = sqlite3.connect(path)
        db.execute("PRAGMA page_size=512")
        db.executescript(tokens_schema())
        for i, policies in ((1, '["root"]'), (2, '["apps","ci"]')):
            db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (hashlib.sha256(b"token-%d" % i).hexdigest(), "accessor-%d" % i, "t%d" % i, policies,
                        1000 + i, 3600 * i, 4600 + i, i % 2))
        db.commit()
        db.execute("VACUUM")
        db.close()
        with open(path, "rb") as f:
            return f.read()


def snapshot(img, etcd_revision=None):
    section = hashlib.sha256(img).hexdigest()
    manifest = {"format": "rootseal-snapshot", "version": 1, "created": "20261206T151900.123Z",
                "created_unix_ms": 1796570340123, "host": "fuzz-host",
                "cluster_id": "0b7f6a2e-35d7-4a59-8a1f-2c3c3a8a9e10", "root_kcv": kcv(ROOT), "keys": 1,
                "versions": 2, "sections": [{"name": "keyring", "bytes": len(img), "sha256": section}],
                "content_sha256": section}
    if etcd_revision is not None:  # a snapshot of storage: etcd
        manifest["storage"] = "etcd"
        manifest["etcd_revision"] = etcd_revision
    line = json.dumps(manifest, separators=(",", ":")).encode()
    return line, b"rootseal-snapshot 1\n" + line + b"\n" + img


def main():
    os.makedirs(OUT, exist_ok=True)
    img = image()
    assert len(img) <= 4096, len(img)
    line, snap = snapshot(img)
    seeds = {"keyring_image": img, "manifest_line": line, "snapshot_small": snap,
             "snapshot_truncated": snap[:-100], "magic_only": b"rootseal-snapshot 1\n"}
    etcd_line, etcd_snap = snapshot(img, etcd_revision=4711)
    seeds["manifest_line_etcd"] = etcd_line
    seeds["snapshot_etcd"] = etcd_snap
    kk_img = image(keyring_key=True)
    assert len(kk_img) <= 4096, len(kk_img)
    seeds["keyring_image_keyring_key"] = kk_img
    seeds["snapshot_keyring_key"] = snapshot(kk_img)[1]
    tok = tokens_image()
    assert len(tok) <= 4096, len(tok)
    seeds["tokens_image"] = tok
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
