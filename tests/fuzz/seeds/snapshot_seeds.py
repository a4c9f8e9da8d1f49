#!/usr/bin/env python3
"""Regenerates the seeds of tests/fuzz/corpus/snapshot (fuzz_snapshot).

A keyring database in the store's schema (migration 1, read from
kms/src/sqlite_store.cpp) with 512-byte pages, so that a whole image fits the fuzzer's 4 KiB inputs:
one key with two versions, their KEKs wrapped (AES-KWP, RFC 5649) under the
fixed root key of snapshot_fuzz.cpp (32 bytes of 0x42). Seeds: that image (the
harness builds and verifies a snapshot around it), the snapshot file made of
it (magic line, manifest, image, with correct digests), its manifest line,
a truncated snapshot, and the snapshot and manifest line of the same image
as a snapshot of etcd (storage etcd, etcd_revision).
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


def schema():
    """The store's first migration, read from its source (so the seeds follow it)."""
    with open(STORE_SOURCE) as f:
        text = f.read()
    return re.search(r'R"sql\((.*?)\)sql"', text, re.S).group(1)


def kcv(key):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (enc.update(bytes(16)) + enc.finalize())[:3].hex()


def image():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.db")
        db = sqlite3.connect(path)
        db.execute("PRAGMA page_size=512")
        db.executescript(schema())
        db.execute("PRAGMA user_version=1")
        db.execute("INSERT INTO keys VALUES ('fuzz', 'aes256-gcm96', 0, 1000, 1, 0, 0, 0)")
        for v in (1, 2):
            kek = bytes([v]) * 32
            db.execute("INSERT INTO key_versions VALUES ('fuzz', ?, ?, ?, ?)",
                       (v, 1000 + v, aes_key_wrap_with_padding(ROOT, kek), kcv(ROOT)))
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
    for name, data in seeds.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
