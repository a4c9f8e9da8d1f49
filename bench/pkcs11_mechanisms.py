#!/usr/bin/env python3
"""Per-mechanism wrap/unwrap rates of hsm::Pkcs11Root on opencryptoki's
software token (aes-cbc-pad-hmac, rsa-oaep) and on tpm2-pkcs11 over swtpm
(rsa-oaep, the only root mechanism it can hold): starts each token as the
tests do (tests/integration/pkcs11_impls.py: a private mount and IPC
namespace, so run as root) and runs rootseal_bench_pkcs11 against it.
SoftHSM2's figures come from rootseal_bench_pkcs11 alone.
ROOTSEAL_BENCH_IMPLS (default "opencryptoki,tpm2-pkcs11") picks the tokens.

    sudo bench/pkcs11_mechanisms.py build/release/bench/rootseal_bench_pkcs11 [benchmark args...]
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import pkcs11_impls  # noqa: E402


# implementation -> (how to start it, root mechanisms, benchmark filter)
IMPLS = {
    "opencryptoki": (pkcs11_impls.opencryptoki, "aes-cbc-pad-hmac,rsa-oaep", "cbc_pad_hmac|rsa_oaep"),
    "tpm2-pkcs11": (pkcs11_impls.tpm2_pkcs11, "rsa-oaep", "rsa_oaep"),
}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    bench = os.path.abspath(sys.argv[1])
    pkcs11_impls.enter_private_namespace()
    status = 0
    for name in os.environ.get("ROOTSEAL_BENCH_IMPLS", "opencryptoki,tpm2-pkcs11").split(","):
        start, mechanisms, selected = IMPLS[name]
        base = pkcs11_impls.tempfile_dir("rootseal-bench-p11-")
        d = os.path.join(base, name)
        os.makedirs(d)
        tok = start(d)
        try:
            print("== %s" % name, flush=True)
            env = dict(tok.env, ROOTSEAL_BENCH_MODULE=tok.module, ROOTSEAL_BENCH_TOKEN=tok.label,
                       ROOTSEAL_BENCH_PIN=tok.pin, ROOTSEAL_BENCH_MECHANISMS=mechanisms)
            r = subprocess.run([bench, "--benchmark_filter=" + selected] + sys.argv[2:], env=env)
            status = status or r.returncode
        finally:
            tok.stop()
            shutil.rmtree(base, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
