"""RS256 JSON Web Tokens with the Python standard library only: an RSA key
pair generated in-process (Miller-Rabin), signing, verification, the JWK of
the public key. For test doubles (the Kubernetes double's ServiceAccount
tokens, the Vault double's JWT auth), never for anything real."""
import base64
import hashlib
import hmac
import json
import secrets

_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64url_decode(s):
    if isinstance(s, bytes):
        s = s.decode()
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _probable_prime(n, rounds=24):
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits):
    while True:
        c = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if _probable_prime(c):
            return c


class RsaKey:
    """An RSA key pair (e = 65537) with a key id."""

    def __init__(self, bits=2048):
        e = 65537
        while True:
            p, q = _prime(bits // 2), _prime(bits // 2)
            phi = (p - 1) * (q - 1)
            if p != q and phi % e != 0:
                break
        self.n, self.e, self.d = p * q, e, pow(e, -1, phi)
        self.kid = b64url(hashlib.sha256(self.n.to_bytes((self.n.bit_length() + 7) // 8, "big")).digest())[:43]

    def jwk(self):
        k = (self.n.bit_length() + 7) // 8
        return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                "n": b64url(self.n.to_bytes(k, "big")), "e": b64url(self.e.to_bytes(3, "big"))}

    def sign(self, claims, header_extra=None):
        header = {"alg": "RS256", "kid": self.kid}
        header.update(header_extra or {})
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode())).encode()
        k = (self.n.bit_length() + 7) // 8
        digest = hashlib.sha256(signing_input).digest()
        em = b"\x00\x01" + b"\xff" * (k - 3 - len(_SHA256_PREFIX) - 32) + b"\x00" + _SHA256_PREFIX + digest
        sig = pow(int.from_bytes(em, "big"), self.d, self.n).to_bytes(k, "big")
        return signing_input.decode() + "." + b64url(sig)


def rs256_verify(n, e, signing_input, sig):
    k = (n.bit_length() + 7) // 8
    if len(sig) != k:
        return False
    m = pow(int.from_bytes(sig, "big"), e, n).to_bytes(k, "big")
    digest = hashlib.sha256(signing_input).digest()
    expected = b"\x00\x01" + b"\xff" * (k - 3 - len(_SHA256_PREFIX) - 32) + b"\x00" + _SHA256_PREFIX + digest
    return hmac.compare_digest(m, expected)


def verify(token, jwks):
    """The claims of an RS256 token whose signature one of the JWKs (a list)
    verifies; ValueError with the reason otherwise. Expiry is the caller's."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise ValueError("token is not a JWT")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        sig = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError("token is malformed: %s" % e)
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        raise ValueError("token is not an RS256 JWT")
    signing_input = (parts[0] + "." + parts[1]).encode()
    for key in jwks:
        if key.get("kty") != "RSA" or (header.get("kid") and key.get("kid") and key["kid"] != header["kid"]):
            continue
        n = int.from_bytes(b64url_decode(key["n"]), "big")
        e = int.from_bytes(b64url_decode(key["e"]), "big")
        if rs256_verify(n, e, signing_input, sig):
            return claims
    raise ValueError("failed to verify id token signature")
