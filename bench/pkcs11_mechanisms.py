#!/usr/bin/env python3
"""Per-mechanism wrap/unwrap rates of hsm::Pkcs11Root on opencryptoki's
software token (aes-cbc-pad-hmac, rsa-oaep): starts the token as the tests do
(tests/integration/pkcs11_impls.py: a private mount and IPC namespace, so run
as root) and runs rootseal_bench_pkcs11 against it. SoftHSM2's figures come
from rootseal_bench_pkcs11 alone.

    sudo bench/pkcs11_mechanisms.py build/release/bench/rootseal_bench_pkcs11 [benchmark args...]
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import pkcs11_impls  # noqa: E402


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bench = os.path.abspath(sys.argv[1])
    pkcs11_impls.enter_private_namespace()
    base = pkcs11_impls.tempfile_dir("rootseal-bench-p11-")
    d = os.path.join(base, "opencryptoki")
    os.makedirs(d)
    tok = pkcs11_impls.opencryptoki(d)
    try:
        env = dict(tok.env, ROOTSEAL_BENCH_MODULE=tok.module, ROOTSEAL_BENCH_TOKEN=tok.label,
                   ROOTSEAL_BENCH_PIN=tok.pin, ROOTSEAL_BENCH_MECHANISMS="aes-cbc-pad-hmac,rsa-oaep")
        r = subprocess.run([bench, "--benchmark_filter=cbc_pad_hmac|rsa_oaep"] + sys.argv[2:], env=env)
        sys.exit(r.returncode)
    finally:
        tok.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
