// ESO's template helpers (eso_funcs.hpp) on OpenSSL 3. Go's encoding/pem and
// encoding/base64 are followed to the byte (the PEM parser below is Go's
// pem.Decode), certificates are parsed by OpenSSL and checked the way Go's
// x509 reads what ESO uses (key identifiers, subject alternative names),
// PKCS#12 files are read bag by bag as go-pkcs12's DecodeChain does and
// written as its Modern encoder does (PBES2 AES-256-CBC, PBKDF2-HMAC-SHA256,
// 2048 iterations, a SHA-256 MAC). OpenSSL's own objects (X509, EVP_PKEY)
// hold key material in OpenSSL's memory while a function runs; what the
// functions read and return is kms::SecureBytes.
#include "eso_funcs.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pkcs12.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "../go_json.hpp"
#include "rootseal/kms/encoding.hpp"

namespace rootseal::sync::tmpl::eso {

using kms::Result;

namespace {

std::unexpected<kms::Error> fail(std::string_view fn, std::string_view what) {
  return kms::fail(kms::Errc::invalid_argument,
                   "template: error calling " + std::string(fn) + ": " + std::string(what));
}

template <auto F>
struct Deleter {
  template <typename T>
  void operator()(T* p) const noexcept {
    F(p);
  }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using P8Ptr = std::unique_ptr<PKCS8_PRIV_KEY_INFO, Deleter<PKCS8_PRIV_KEY_INFO_free>>;
using P12Ptr = std::unique_ptr<PKCS12, Deleter<PKCS12_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BN_clear_free>>;
using CtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using BldPtr = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD_free>>;
using ParamsPtr = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
struct SafesFree {
  void operator()(STACK_OF(PKCS7) * s) const noexcept { sk_PKCS7_pop_free(s, PKCS7_free); }
};
struct BagsFree {
  void operator()(STACK_OF(PKCS12_SAFEBAG) * s) const noexcept { sk_PKCS12_SAFEBAG_pop_free(s, PKCS12_SAFEBAG_free); }
};
struct CertsFree {
  void operator()(STACK_OF(X509) * s) const noexcept { sk_X509_pop_free(s, X509_free); }
};

std::string_view view(const kms::SecureBytes& b) { return as_view(b); }
const unsigned char* uc(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// ---- Go's encoding/base64 (decoding) and encoding/pem ------------------------

// Go's base64 decoding: '\r' and '\n' skipped; with padding the last quantum
// is "xx==" or "xxx=" and nothing follows; without, a final 2 or 3
// characters; the bits after the last byte are not checked (not Strict).
std::optional<kms::SecureBytes> go_b64_decode(std::string_view s, bool url, bool padded) {
  SecureBuffer clean(s.size());
  for (char c : s) {
    if (c != '\r' && c != '\n') clean.push_back(c);
  }
  std::string_view t = clean.view();
  std::size_t pad = 0;
  if (padded) {
    if (t.size() % 4 != 0) return std::nullopt;
    while (pad < 2 && pad < t.size() && t[t.size() - 1 - pad] == '=') ++pad;
    t.remove_suffix(pad);
  } else if (t.size() % 4 == 1) {
    return std::nullopt;
  }
  const auto digit = [url](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
  };
  SecureBuffer out(t.size() / 4 * 3 + 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : t) {
    const int d = digit(c);
    if (d < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (padded && pad > 0 && t.size() % 4 + pad != 4) return std::nullopt;
  return out.take();
}

using Headers = std::map<kms::SecureBytes, kms::SecureBytes, KeyLess>;
struct PemBlock {
  kms::SecureBytes type;
  Headers headers;
  kms::SecureBytes bytes;
};

// Go's getLine: up to '\n' (a '\r' before it dropped), trailing spaces and
// tabs trimmed; and the rest after the '\n'.
std::pair<std::string_view, std::string_view> get_line(std::string_view data) {
  auto i = data.find('\n');
  std::size_t j = 0;
  if (i == std::string_view::npos) {
    i = j = data.size();
  } else {
    j = i + 1;
    if (i > 0 && data[i - 1] == '\r') --i;
  }
  std::string_view line = data.substr(0, i);
  while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
  return {line, data.substr(j)};
}

std::string_view trim_space(std::string_view s) {
  const auto sp = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  while (!s.empty() && sp(s.front())) s.remove_prefix(1);
  while (!s.empty() && sp(s.back())) s.remove_suffix(1);
  return s;
}

constexpr std::string_view kPemStart = "\n-----BEGIN ";
constexpr std::string_view kPemEnd = "\n-----END ";
constexpr std::string_view kPemEndOfLine = "-----";

// Go's pem.Decode: the first block and the rest after it, or nothing and
// all of `data`.
std::pair<std::optional<PemBlock>, std::string_view> pem_decode(std::string_view data) {
  std::string_view rest = data;
  for (;;) {
    if (rest.starts_with(kPemStart.substr(1))) {
      rest.remove_prefix(kPemStart.size() - 1);
    } else if (const auto at = rest.find(kPemStart); at != std::string_view::npos) {
      rest.remove_prefix(at + kPemStart.size());
    } else {
      return {std::nullopt, data};
    }
    auto [type_line, after] = get_line(rest);
    rest = after;
    if (!type_line.ends_with(kPemEndOfLine)) continue;
    type_line.remove_suffix(kPemEndOfLine.size());

    PemBlock p;
    bool truncated = false;
    for (;;) {
      if (rest.empty()) {
        truncated = true;
        break;
      }
      const auto [line, next] = get_line(rest);
      const auto colon = line.find(':');
      if (colon == std::string_view::npos) break;
      p.headers.insert_or_assign(kms::SecureBytes::copy_of(trim_space(line.substr(0, colon))),
                                 kms::SecureBytes::copy_of(trim_space(line.substr(colon + 1))));
      rest = next;
    }
    if (truncated) return {std::nullopt, data};

    std::size_t end_index = 0, end_trailer_index = 0;
    if (p.headers.empty() && rest.starts_with(kPemEnd.substr(1))) {
      end_trailer_index = kPemEnd.size() - 1;
    } else {
      end_index = rest.find(kPemEnd);
      if (end_index == std::string_view::npos) continue;
      end_trailer_index = end_index + kPemEnd.size();
    }
    std::string_view end_trailer = rest.substr(end_trailer_index);
    const std::size_t end_trailer_len = type_line.size() + kPemEndOfLine.size();
    if (end_trailer.size() < end_trailer_len) continue;
    const std::string_view rest_of_end_line = end_trailer.substr(end_trailer_len);
    end_trailer = end_trailer.substr(0, end_trailer_len);
    if (!end_trailer.starts_with(type_line) || !end_trailer.ends_with(kPemEndOfLine)) continue;
    if (!get_line(rest_of_end_line).first.empty()) continue;

    SecureBuffer b64(end_index);
    for (char c : rest.substr(0, end_index)) {
      if (c != ' ' && c != '\t') b64.push_back(c);
    }
    auto bytes = go_b64_decode(b64.view(), false, true);
    if (!bytes) continue;
    p.type = kms::SecureBytes::copy_of(type_line);
    p.bytes = std::move(*bytes);
    return {std::move(p), get_line(rest.substr(end_index + kPemEnd.size() - 1)).second};
  }
}

// Go's pem.Encode: headers (Proc-Type first, then sorted) and the base64 in
// lines of 64 characters.
void pem_encode(SecureBuffer& out, std::string_view type, std::span<const std::uint8_t> der,
                const Headers* headers = nullptr) {
  out.append("-----BEGIN ");
  out.append(type);
  out.append("-----\n");
  if (headers != nullptr && !headers->empty()) {
    const auto write = [&](const kms::SecureBytes& k, const kms::SecureBytes& v) {
      out.append(k.span());
      out.append(": ");
      out.append(v.span());
      out.append("\n");
    };
    const auto proc = headers->find(std::string_view("Proc-Type"));
    if (proc != headers->end()) write(proc->first, proc->second);
    for (const auto& [k, v] : *headers) {
      if (view(k) != "Proc-Type") write(k, v);
    }
    out.append("\n");
  }
  const kms::SecureBytes b64 = kms::base64_encode_secure(der);
  for (std::size_t i = 0; i < b64.size(); i += 64) {
    out.append(view(b64).substr(i, 64));
    out.append("\n");
  }
  out.append("-----END ");
  out.append(type);
  out.append("-----\n");
}

// Go's strings.Index(input, "-----BEGIN") cut (ESO's trimJunk).
std::string_view trim_junk(std::string_view input) {
  const auto at = input.find("-----BEGIN");
  return at == std::string_view::npos ? input : input.substr(at);
}

bool ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// ---- certificates --------------------------------------------------------------

struct Cert {
  X509Ptr x;
  kms::SecureBytes der;  // Go's cert.Raw
  std::optional<kms::SecureBytes> aki, ski;
};

// x509.ParseCertificate: one DER certificate and nothing after it.
Result<Cert> parse_cert(std::string_view fn, std::span<const std::uint8_t> der) {
  const unsigned char* p = der.data();
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!x) return fail(fn, "x509: malformed certificate");
  if (p != der.data() + der.size()) return fail(fn, "x509: trailing data");
  // Cache the extensions; an extension OpenSSL cannot read is an error as in Go.
  if ((X509_get_extension_flags(x.get()) & EXFLAG_INVALID) != 0) return fail(fn, "x509: malformed extension");
  Cert c{std::move(x), kms::SecureBytes::copy_of(der), std::nullopt, std::nullopt};
  if (const ASN1_OCTET_STRING* a = X509_get0_authority_key_id(c.x.get()); a != nullptr) {
    c.aki =
        kms::SecureBytes::copy_of(std::span(ASN1_STRING_get0_data(a), static_cast<std::size_t>(ASN1_STRING_length(a))));
  }
  if (const ASN1_OCTET_STRING* s = X509_get0_subject_key_id(c.x.get()); s != nullptr) {
    c.ski =
        kms::SecureBytes::copy_of(std::span(ASN1_STRING_get0_data(s), static_cast<std::size_t>(ASN1_STRING_length(s))));
  }
  return c;
}

// bytes.Equal of two key identifiers (absent and empty are equal, as nil
// and an empty slice are in Go).
bool same_id(const std::optional<kms::SecureBytes>& a, const std::optional<kms::SecureBytes>& b) {
  const std::string_view x = a ? view(*a) : std::string_view();
  const std::string_view y = b ? view(*b) : std::string_view();
  return x == y;
}
bool is_root(const Cert& c) { return !c.aki || same_id(c.aki, c.ski); }

// ESO's fetchX509CertChains (pem_chain.go): each certificate's parent is the
// first other one whose subject key id is its authority key id; the leaf is
// the one certificate that is no one's parent; the chain follows parents.
Result<std::vector<const Cert*>> order_chain(std::string_view fn, const std::vector<Cert>& certs) {
  const std::size_t n = certs.size();
  std::vector<std::optional<std::size_t>> parent(n);
  std::vector<bool> is_parent(n, false);
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      if (i == j) continue;
      if (same_id(certs[i].aki, certs[j].ski)) {
        is_parent[j] = true;
        parent[i] = j;
        break;
      }
    }
  }
  std::optional<std::size_t> leaf;
  for (std::size_t i = 0; i < n; ++i) {
    if (is_parent[i]) continue;
    if (leaf) return fail(fn, "found multiple leaf or disjunct certificates");
    leaf = i;
  }
  if (!leaf) return fail(fn, "no leaf certificate found");
  std::vector<const Cert*> chain;
  for (std::optional<std::size_t> at = leaf; at; at = parent[*at]) {
    if (chain.size() >= n) return fail(fn, "constructing chain resulted in cycle");
    chain.push_back(&certs[*at]);
  }
  return chain;
}

// ESO's pemToNodes: every PEM block of the input, as a certificate.
Result<std::vector<Cert>> pem_certs(std::string_view fn, std::string_view input) {
  std::vector<Cert> certs;
  for (;;) {
    auto [block, rest] = pem_decode(input);
    if (!block) return certs;
    input = rest;
    ROOTSEAL_LET(c, parse_cert(fn, block->bytes.span()));
    certs.push_back(std::move(c));
  }
}

Value pem_value(const std::vector<const Cert*>& certs) {
  SecureBuffer out(4096);
  for (const Cert* c : certs) pem_encode(out, "CERTIFICATE", c->der.span());
  return string_value(out.take());
}

// ---- private keys ----------------------------------------------------------------

// Go's MarshalPKCS8PrivateKey for the key types Go's x509 knows.
Result<kms::SecureBytes> pkcs8_der(std::string_view fn, EVP_PKEY* key) {
  const int id = EVP_PKEY_get_base_id(key);
  if (id != EVP_PKEY_RSA && id != EVP_PKEY_EC && id != EVP_PKEY_ED25519 && id != EVP_PKEY_X25519)
    return fail(fn, "x509: unknown key type while marshaling PKCS#8");
  P8Ptr p8(EVP_PKEY2PKCS8(key));
  if (!p8) return fail(fn, "x509: failed to marshal private key");
  const int len = i2d_PKCS8_PRIV_KEY_INFO(p8.get(), nullptr);
  if (len <= 0) return fail(fn, "x509: failed to marshal private key");
  kms::SecureBytes der(static_cast<std::size_t>(len));
  unsigned char* p = der.data();
  i2d_PKCS8_PRIV_KEY_INFO(p8.get(), &p);
  return der;
}

Value pem_of(std::string_view type, const kms::SecureBytes& der) {
  SecureBuffer out(der.size() * 4 / 3 + 128);
  pem_encode(out, type, der.span());
  return string_value(out.take());
}

// Go's named curves (x509 reads no others).
bool go_curve(EVP_PKEY* key) {
  char name[64] = {};
  std::size_t len = 0;
  if (EVP_PKEY_get_group_name(key, name, sizeof name, &len) != 1) return false;
  const std::string_view n(name, len);
  return n == "prime256v1" || n == "secp384r1" || n == "secp521r1" || n == "secp224r1";
}

// ESO's parsePrivateKey: PKCS#1 RSA, then PKCS#8, then SEC 1 EC, each the
// whole of the DER.
PkeyPtr parse_private_key(std::span<const std::uint8_t> der) {
  const auto whole = [&](int type) -> PkeyPtr {
    const unsigned char* p = der.data();
    PkeyPtr k(d2i_PrivateKey(type, nullptr, &p, static_cast<long>(der.size())));
    if (!k || p != der.data() + der.size() || EVP_PKEY_get_base_id(k.get()) != type) return nullptr;
    return k;
  };
  if (auto k = whole(EVP_PKEY_RSA)) return k;
  {
    const unsigned char* p = der.data();
    P8Ptr p8(d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(der.size())));
    if (p8 && p == der.data() + der.size()) {
      PkeyPtr k(EVP_PKCS82PKEY(p8.get()));
      if (k) {
        const int id = EVP_PKEY_get_base_id(k.get());
        if (id == EVP_PKEY_RSA || id == EVP_PKEY_ED25519 || id == EVP_PKEY_X25519 ||
            (id == EVP_PKEY_EC && go_curve(k.get())))
          return k;
      }
    }
  }
  if (auto k = whole(EVP_PKEY_EC); k && go_curve(k.get())) return k;
  return nullptr;
}

// ---- PKCS#12 -----------------------------------------------------------------------

// The work a PKCS#12 file asks for is the iteration counts of its MAC and
// its password-based encryptions, which the file sets: at most this many
// each, so that a file from a store cannot tie a sync worker up.
constexpr long kMaxPkcs12Iterations = 1'000'000;

bool iterations_ok(const X509_ALGOR* alg) {
  if (alg == nullptr) return true;
  long iter = 0;
  if (OBJ_obj2nid(alg->algorithm) == NID_pbes2) {
    std::unique_ptr<PBE2PARAM, Deleter<PBE2PARAM_free>> pbe2(
        static_cast<PBE2PARAM*>(ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter)));
    if (!pbe2 || pbe2->keyfunc == nullptr) return true;  // OpenSSL refuses it itself
    std::unique_ptr<PBKDF2PARAM, Deleter<PBKDF2PARAM_free>> kdf(
        static_cast<PBKDF2PARAM*>(ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM), pbe2->keyfunc->parameter)));
    if (!kdf) return true;
    iter = ASN1_INTEGER_get(kdf->iter);
  } else {
    std::unique_ptr<PBEPARAM, Deleter<PBEPARAM_free>> pbe(
        static_cast<PBEPARAM*>(ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBEPARAM), alg->parameter)));
    if (!pbe) return true;
    iter = ASN1_INTEGER_get(pbe->iter);
  }
  return iter <= kMaxPkcs12Iterations;
}

struct Pkcs12Contents {
  PkeyPtr key;
  std::vector<Cert> certs;  // the first is the certificate, the others CA certificates
};

// go-pkcs12's DecodeChain: the MAC checked (an empty password also tried as
// no password), one or two authenticated safes, the certificate bags in
// order, exactly one key bag (plain or shrouded).
Result<Pkcs12Contents> pkcs12_decode(std::string_view fn, std::string_view pass, std::string_view input,
                                     std::string_view what) {
  const auto bad = [&](std::string_view why) { return fail(fn, std::string(what) + ": " + std::string(why)); };
  const unsigned char* p = uc(input);
  P12Ptr p12(d2i_PKCS12(nullptr, &p, static_cast<long>(input.size())));
  if (!p12) return bad("pkcs12: error reading P12 data");
  if (p != uc(input) + input.size()) return bad("pkcs12: error reading P12 data: trailing data");
  const char* pw = pass.empty() ? "" : pass.data();
  int pwlen = static_cast<int>(pass.size());
  const auto too_much = [&] {
    return fail(fn, std::string(what) + ": pkcs12: more than 1000000 iterations are not supported");
  };
  if (PKCS12_mac_present(p12.get()) != 0) {
    const ASN1_INTEGER* mac_iter = nullptr;
    PKCS12_get0_mac(nullptr, nullptr, nullptr, &mac_iter, p12.get());
    if (mac_iter != nullptr && ASN1_INTEGER_get(mac_iter) > kMaxPkcs12Iterations) return too_much();
  }
  if (PKCS12_mac_present(p12.get()) == 0) {
    if (!pass.empty()) return bad("pkcs12: no MAC in data");
  } else if (PKCS12_verify_mac(p12.get(), pw, pwlen) != 1) {
    if (!pass.empty() || PKCS12_verify_mac(p12.get(), nullptr, 0) != 1)
      return bad("pkcs12: decryption password incorrect");
    pw = nullptr;
    pwlen = 0;
  }
  std::unique_ptr<STACK_OF(PKCS7), SafesFree> safes(PKCS12_unpack_authsafes(p12.get()));
  if (!safes) return bad("pkcs12: only password-protected PFX is implemented");
  const int n = sk_PKCS7_num(safes.get());
  if (n < 1 || n > 2) return bad("pkcs12: expected between 1 and 2 items in the authenticated safe");
  Pkcs12Contents out;
  for (int i = 0; i < n; ++i) {
    PKCS7* p7 = sk_PKCS7_value(safes.get(), i);
    std::unique_ptr<STACK_OF(PKCS12_SAFEBAG), BagsFree> bags;
    if (PKCS7_type_is_data(p7)) {
      bags.reset(PKCS12_unpack_p7data(p7));
    } else if (PKCS7_type_is_encrypted(p7)) {
      if (p7->d.encrypted != nullptr && p7->d.encrypted->enc_data != nullptr &&
          !iterations_ok(p7->d.encrypted->enc_data->algorithm))
        return too_much();
      bags.reset(PKCS12_unpack_p7encdata(p7, pw, pwlen));
    } else {
      return bad("pkcs12: only data and encryptedData content types are supported in authenticated safe");
    }
    if (!bags) return bad("pkcs12: cannot read the safe contents");
    for (int b = 0; b < sk_PKCS12_SAFEBAG_num(bags.get()); ++b) {
      const PKCS12_SAFEBAG* bag = sk_PKCS12_SAFEBAG_value(bags.get(), b);
      switch (PKCS12_SAFEBAG_get_nid(bag)) {
        case NID_certBag: {
          if (PKCS12_SAFEBAG_get_bag_nid(bag) != NID_x509Certificate) return bad("pkcs12: unexpected certificate type");
          X509Ptr x(PKCS12_SAFEBAG_get1_cert(bag));
          if (!x) return bad("pkcs12: cannot read a certificate bag");
          const int len = i2d_X509(x.get(), nullptr);
          if (len <= 0) return bad("pkcs12: cannot read a certificate bag");
          kms::SecureBytes der(static_cast<std::size_t>(len));
          unsigned char* q = der.data();
          i2d_X509(x.get(), &q);
          ROOTSEAL_LET(c, parse_cert(fn, der.span()));
          out.certs.push_back(std::move(c));
          break;
        }
        case NID_keyBag:
        case NID_pkcs8ShroudedKeyBag: {
          if (out.key) return bad("pkcs12: expected exactly one key bag");
          const bool shrouded = PKCS12_SAFEBAG_get_nid(bag) == NID_pkcs8ShroudedKeyBag;
          if (shrouded) {
            const X509_ALGOR* alg = nullptr;
            X509_SIG_get0(PKCS12_SAFEBAG_get0_pkcs8(bag), &alg, nullptr);
            if (!iterations_ok(alg)) return too_much();
          }
          P8Ptr owned(shrouded ? PKCS12_decrypt_skey(bag, pw, pwlen) : nullptr);
          const PKCS8_PRIV_KEY_INFO* p8 = shrouded ? owned.get() : PKCS12_SAFEBAG_get0_p8inf(bag);
          if (p8 == nullptr) return bad("pkcs12: decryption error");
          out.key.reset(EVP_PKCS82PKEY(p8));
          if (!out.key) return bad("x509: failed to parse private key");
          break;
        }
        default:
          break;
      }
    }
  }
  if (out.certs.empty()) return bad("pkcs12: certificate missing");
  if (!out.key) return bad("pkcs12: private key missing");
  return out;
}

// ---- JWK -----------------------------------------------------------------------

// A JWK member: base64url (or standard, padded or not: jwx's Decode) of a
// big-endian number or a key.
Result<std::optional<kms::SecureBytes>> jwk_field(std::string_view fn, const Map& jwk, std::string_view name) {
  const auto it = jwk.find(name);
  if (it == jwk.end()) return std::optional<kms::SecureBytes>();
  if (it->second.kind != Value::Kind::string) return fail(fn, "failed to parse key: a JWK member is not a string");
  const std::string_view s = it->second.str();
  const bool url = s.find_first_of("+/") == std::string_view::npos;
  auto d = go_b64_decode(s, url, s.ends_with('='));
  if (!d) return fail(fn, "failed to parse key: a JWK member is not valid base64");
  return std::optional<kms::SecureBytes>(std::move(*d));
}

BnPtr bn(const kms::SecureBytes& b) {
  BnPtr r(BN_secure_new());
  if (r) BN_bin2bn(b.data(), static_cast<int>(b.size()), r.get());
  return r;
}

Result<PkeyPtr> from_params(std::string_view fn, const char* type, OSSL_PARAM_BLD* bld, bool priv) {
  ParamsPtr params(OSSL_PARAM_BLD_to_param(bld));
  CtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return fail(fn, "failed to create key from the JWK");
  return PkeyPtr(key);
}

Result<PkeyPtr> jwk_rsa(std::string_view fn, const Map& jwk, bool priv) {
  std::optional<kms::SecureBytes> f[8];
  static constexpr std::string_view kNames[8] = {"n", "e", "d", "p", "q", "dp", "dq", "qi"};
  for (int i = 0; i < 8; ++i) ROOTSEAL_TRY_ASSIGN(f[i], jwk_field(fn, jwk, kNames[i]));
  if (!f[0] || !f[1]) return fail(fn, "failed to parse key: required field n or e is missing");
  if (priv && (!f[3] || !f[4])) return fail(fn, "x509: an RSA JWK without its primes p and q cannot be marshaled");
  BldPtr bld(OSSL_PARAM_BLD_new());
  std::vector<BnPtr> keep;
  static const char* const kParams[8] = {OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
                                         OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
                                         OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
                                         OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
  std::vector<BnPtr> v(8);
  for (int i = 0; i < 8; ++i) {
    if (f[i]) v[static_cast<std::size_t>(i)] = bn(*f[i]);
  }
  if (priv && (!f[5] || !f[6] || !f[7])) {
    // Go computes what the JWK leaves out (rsa.PrivateKey.Precompute).
    std::unique_ptr<BN_CTX, Deleter<BN_CTX_free>> ctx(BN_CTX_secure_new());
    BnPtr p1(BN_secure_new()), q1(BN_secure_new());
    if (!ctx || !p1 || !q1 || BN_sub(p1.get(), v[3].get(), BN_value_one()) != 1 ||
        BN_sub(q1.get(), v[4].get(), BN_value_one()) != 1)
      return fail(fn, "failed to create key from the JWK");
    v[5].reset(BN_secure_new());
    v[6].reset(BN_secure_new());
    v[7].reset(BN_secure_new());
    if (!v[5] || !v[6] || !v[7] || BN_mod(v[5].get(), v[2].get(), p1.get(), ctx.get()) != 1 ||
        BN_mod(v[6].get(), v[2].get(), q1.get(), ctx.get()) != 1 ||
        BN_mod_inverse(v[7].get(), v[4].get(), v[3].get(), ctx.get()) == nullptr)
      return fail(fn, "failed to create key from the JWK");
  }
  const int count = priv ? 8 : 2;
  for (int i = 0; i < count; ++i) {
    if (!v[static_cast<std::size_t>(i)] ||
        OSSL_PARAM_BLD_push_BN(bld.get(), kParams[i], v[static_cast<std::size_t>(i)].get()) != 1)
      return fail(fn, "failed to create key from the JWK");
  }
  return from_params(fn, "RSA", bld.get(), priv);
}

Result<PkeyPtr> jwk_ec(std::string_view fn, const Map& jwk, bool priv) {
  const auto crv = jwk.find(std::string_view("crv"));
  const std::string_view c = crv == jwk.end() ? std::string_view() : crv->second.str();
  const char* group = c == "P-256" ? "prime256v1" : c == "P-384" ? "secp384r1" : c == "P-521" ? "secp521r1" : nullptr;
  if (group == nullptr) return fail(fn, "failed to parse key: unsupported elliptic curve");
  const std::size_t size = c == "P-256" ? 32 : c == "P-384" ? 48 : 66;
  std::optional<kms::SecureBytes> x, y, d;
  ROOTSEAL_TRY_ASSIGN(x, jwk_field(fn, jwk, "x"));
  ROOTSEAL_TRY_ASSIGN(y, jwk_field(fn, jwk, "y"));
  ROOTSEAL_TRY_ASSIGN(d, jwk_field(fn, jwk, "d"));
  if (!x || !y) return fail(fn, "failed to parse key: required field x or y is missing");
  // The point, uncompressed: 04 || X || Y, each padded to the field size.
  const auto strip = [](std::string_view s) {
    while (!s.empty() && s.front() == '\0') s.remove_prefix(1);
    return s;
  };
  const std::string_view xs = strip(view(*x)), ys = strip(view(*y));
  if (xs.size() > size || ys.size() > size) return fail(fn, "failed to create key from the JWK");
  kms::SecureBytes point(1 + 2 * size);
  std::memset(point.data(), 0, point.size());
  point.data()[0] = 4;
  std::memcpy(point.data() + 1 + size - xs.size(), xs.data(), xs.size());
  std::memcpy(point.data() + 1 + 2 * size - ys.size(), ys.data(), ys.size());
  BldPtr bld(OSSL_PARAM_BLD_new());
  BnPtr dn = d ? bn(*d) : nullptr;
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1 ||
      (priv && (!dn || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, dn.get()) != 1)))
    return fail(fn, "failed to create key from the JWK");
  return from_params(fn, "EC", bld.get(), priv);
}

Result<PkeyPtr> jwk_okp(std::string_view fn, const Map& jwk, bool priv) {
  const auto crv = jwk.find(std::string_view("crv"));
  if (crv == jwk.end() || crv->second.str() != "Ed25519")
    return fail(fn, "x509: unsupported key type (only Ed25519 of the OKP curves)");
  std::optional<kms::SecureBytes> x, d;
  ROOTSEAL_TRY_ASSIGN(x, jwk_field(fn, jwk, "x"));
  ROOTSEAL_TRY_ASSIGN(d, jwk_field(fn, jwk, "d"));
  if (!x || x->size() != 32) return fail(fn, "failed to parse key: invalid Ed25519 public key");
  if (priv) {
    if (!d || d->size() != 32) return fail(fn, "failed to parse key: invalid Ed25519 private key");
    PkeyPtr k(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, d->data(), d->size()));
    if (!k) return fail(fn, "failed to create key from the JWK");
    return k;
  }
  PkeyPtr k(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, x->data(), x->size()));
  if (!k) return fail(fn, "failed to create key from the JWK");
  return k;
}

// The password as OpenSSL takes it: NUL-terminated, in locked memory.
kms::SecureBytes nul_terminated(std::string_view pass) {
  kms::SecureBytes z(pass.size() + 1);
  if (!pass.empty()) std::memcpy(z.data(), pass.data(), pass.size());
  z.data()[pass.size()] = 0;
  return z;
}

// The PFX of the safes with go-pkcs12 Modern's MAC (SHA-256, 2048
// iterations, a 16-byte salt), DER in base64.
Result<Value> seal_pkcs12(std::string_view fn, STACK_OF(PKCS7) * safes, std::string_view pass, const char* pwz) {
  P12Ptr p12(PKCS12_add_safes_ex(safes, 0, nullptr, nullptr));
  if (!p12) return fail(fn, "pkcs12: the certificates cannot be encoded");
  if (PKCS12_set_mac(p12.get(), pwz, static_cast<int>(pass.size()), nullptr, 16, 2048, EVP_sha256()) != 1)
    return fail(fn, "pkcs12: cannot compute the MAC");
  const int len = i2d_PKCS12(p12.get(), nullptr);
  if (len <= 0) return fail(fn, "pkcs12: cannot encode");
  kms::SecureBytes der(static_cast<std::size_t>(len));
  unsigned char* q = der.data();
  i2d_PKCS12(p12.get(), &q);
  return string_value(kms::base64_encode_secure(der.span()));
}

// ---- Go's pkix.Name.String (go-pkcs12 names trust store entries with it) ----

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto [cp, n] = decode_utf8(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// The value Go's x509 parser gives a name attribute: the text of a string
// type (a BMPString decoded from UTF-16), nullopt for other types.
std::optional<kms::SecureBytes> go_atv_string(const ASN1_STRING* d) {
  const std::span<const std::uint8_t> b(ASN1_STRING_get0_data(d), static_cast<std::size_t>(ASN1_STRING_length(d)));
  switch (ASN1_STRING_type(d)) {
    case V_ASN1_UTF8STRING:
    case V_ASN1_PRINTABLESTRING:
    case V_ASN1_IA5STRING:
    case V_ASN1_T61STRING:
    case V_ASN1_NUMERICSTRING:
      return kms::SecureBytes::copy_of(b);
    case V_ASN1_BMPSTRING: {
      if (b.size() % 2 != 0) return std::nullopt;
      SecureBuffer out(b.size() * 2);
      for (std::size_t i = 0; i < b.size(); i += 2) {
        auto r = static_cast<char32_t>(b[i] << 8 | b[i + 1]);
        if (r >= 0xd800 && r < 0xdc00 && i + 3 < b.size()) {
          const auto lo = static_cast<char32_t>(b[i + 2] << 8 | b[i + 3]);
          if (lo >= 0xdc00 && lo < 0xe000) {
            r = 0x10000 + ((r - 0xd800) << 10) + (lo - 0xdc00);
            i += 2;
          } else {
            r = 0xfffd;
          }
        } else if (r >= 0xd800 && r < 0xe000) {
          r = 0xfffd;
        }
        gojson::append_utf8(out, r);
      }
      return out.take();
    }
    default:
      return std::nullopt;
  }
}

// Go's asn1.Marshal of a string: a PrintableString when every character is
// one, else a UTF8String (nullopt: not valid UTF-8, Go's Marshal fails).
std::optional<kms::SecureBytes> go_marshal_string(std::string_view v) {
  const auto printable = [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x80 && std::isalnum(u) != 0) || std::string_view(" '()+,-./:=?").find(c) != std::string_view::npos;
  };
  const bool ps = std::all_of(v.begin(), v.end(), printable);
  if (!ps && !valid_utf8(v)) return std::nullopt;
  SecureBuffer out(v.size() + 10);
  out.push_back(static_cast<char>(ps ? 0x13 : 0x0c));
  if (v.size() < 0x80) {
    out.push_back(static_cast<char>(v.size()));
  } else {
    unsigned char len[8];
    int n = 0;
    for (std::size_t l = v.size(); l != 0; l >>= 8) len[n++] = static_cast<unsigned char>(l & 0xff);
    out.push_back(static_cast<char>(0x80 | n));
    while (n > 0) out.push_back(static_cast<char>(len[--n]));
  }
  out.append(v);
  return out.take();
}

// One attribute as RDNSequence.String writes it: TYPE=value, the value
// escaped as Go does (, + " \ < > ; anywhere, a space first or last, #
// first; a byte that is not UTF-8 becomes U+FFFD, as Go's range gives it).
void append_atv(SecureBuffer& out, std::string_view type, std::string_view v) {
  out.append(type);
  out.push_back('=');
  for (std::size_t k = 0; k < v.size();) {
    const auto [cp, n] = decode_utf8(v, k);
    const char c = v[k];
    bool esc = n == 1 && std::string_view(",+\"\\<>;").find(c) != std::string_view::npos;
    if (c == ' ') esc = k == 0 || k == v.size() - 1;
    if (c == '#') esc = k == 0;
    if (esc) out.push_back('\\');
    out.append(n == 0 ? std::string_view("\xef\xbf\xbd") : v.substr(k, n));
    k += n == 0 ? 1 : n;
  }
}

struct Atv {
  std::string type;  // "CN", or a dotted OID (its value then written as #hex)
  kms::SecureBytes value;
  bool hex = false;
};

void append_rdns(SecureBuffer& out, const std::vector<std::vector<Atv>>& rdns) {
  for (std::size_t i = 0; i < rdns.size(); ++i) {
    if (i > 0) out.push_back(',');
    const auto& rdn = rdns[rdns.size() - 1 - i];
    for (std::size_t j = 0; j < rdn.size(); ++j) {
      if (j > 0) out.push_back('+');
      if (!rdn[j].hex) {
        append_atv(out, rdn[j].type, view(rdn[j].value));
        continue;
      }
      out.append(rdn[j].type);
      out.append("=#");
      const std::size_t at = out.size();
      out.append(std::string(rdn[j].value.size() * 2, '0'));
      kms::hex_encode_into(rdn[j].value.span(), const_cast<char*>(out.view().data()) + at);
    }
  }
}

// pkix.Name.String() of a certificate's subject: the attributes of types
// other than C, ST, L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER first
// (each "OID=#" and the hex of its value as Go's asn1.Marshal writes it),
// then those in that order (the values of one type as one multi-valued RDN;
// of CN and SERIALNUMBER the last value), the whole reversed.
Result<kms::SecureBytes> go_name_string(std::string_view fn, const X509_NAME* name) {
  static constexpr std::pair<int, const char*> kStandard[] = {{NID_countryName, "C"},
                                                              {NID_stateOrProvinceName, "ST"},
                                                              {NID_localityName, "L"},
                                                              {NID_streetAddress, "STREET"},
                                                              {NID_postalCode, "POSTALCODE"},
                                                              {NID_organizationName, "O"},
                                                              {NID_organizationalUnitName, "OU"},
                                                              {NID_commonName, "CN"},
                                                              {NID_serialNumber, "SERIALNUMBER"}};
  std::vector<std::vector<Atv>> rdns;
  std::vector<std::vector<kms::SecureBytes>> fields(std::size(kStandard));
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    const ASN1_OBJECT* obj = X509_NAME_ENTRY_get_object(e);
    const int nid = OBJ_obj2nid(obj);
    auto value = go_atv_string(X509_NAME_ENTRY_get_data(e));
    const auto* std_it =
        std::find_if(std::begin(kStandard), std::end(kStandard), [&](const auto& s) { return s.first == nid; });
    if (std_it != std::end(kStandard)) {
      if (value) fields[static_cast<std::size_t>(std_it - std::begin(kStandard))].push_back(std::move(*value));
      continue;
    }
    if (!value) return fail(fn, "pkcs12: a certificate subject attribute that is not a string is not supported");
    char oid[128];
    if (OBJ_obj2txt(oid, sizeof oid, obj, 1) <= 0) return fail(fn, "x509: malformed subject");
    auto der = go_marshal_string(view(*value));
    std::vector<Atv> one;
    one.push_back(der ? Atv{oid, std::move(*der), true} : Atv{oid, std::move(*value), false});
    rdns.push_back(std::move(one));
  }
  for (std::size_t f = 0; f < fields.size(); ++f) {
    auto& vals = fields[f];
    const bool single = kStandard[f].first == NID_commonName || kStandard[f].first == NID_serialNumber;
    std::vector<Atv> rdn;
    if (single && !vals.empty() && !vals.back().empty()) {
      rdn.push_back(Atv{kStandard[f].second, std::move(vals.back()), false});
    } else if (!single) {
      for (auto& v : vals) rdn.push_back(Atv{kStandard[f].second, std::move(v), false});
    }
    if (!rdn.empty()) rdns.push_back(std::move(rdn));
  }
  SecureBuffer out(64);
  append_rdns(out, rdns);
  return out.take();
}

// go-pkcs12's bmpString: UTF-16 big-endian, refused past U+FFFF.
Result<kms::SecureBytes> bmp_string(std::string_view fn, std::string_view s) {
  SecureBuffer out(s.size() * 2);
  for (std::size_t i = 0; i < s.size();) {
    auto [cp, n] = decode_utf8(s, i);
    if (n == 0) cp = 0xfffd, n = 1;
    if (cp > 0xffff) return fail(fn, "pkcs12: string contains characters that cannot be encoded in UCS-2");
    out.push_back(static_cast<char>(cp >> 8));
    out.push_back(static_cast<char>(cp & 0xff));
    i += n;
  }
  return out.take();
}

}  // namespace

Result<Value> filter_pem(std::string_view type, std::string_view input) {
  const auto same_type = [&](std::string_view t) {
    if (!ascii(t)) return t == type;
    return t.size() == type.size() && std::equal(t.begin(), t.end(), type.begin(), [](char a, char b) {
             return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
           });
  };
  if (!ascii(type)) return fail("filterPEM", "a PEM type other than ASCII is not supported");
  std::string_view data = trim_junk(input);
  SecureBuffer out(data.size());
  std::string_view rest;
  for (;;) {
    auto [block, after] = pem_decode(data);
    rest = after;
    data = after;
    if (!block) break;
    if (!ascii(view(block->type)) && !same_type(view(block->type)))
      return fail("filterPEM", "a PEM type other than ASCII is not supported");
    if (!same_type(view(block->type))) continue;
    pem_encode(out, view(block->type), block->bytes.span(), &block->headers);
  }
  if (out.empty() && !rest.empty()) return fail("filterPEM", "error filtering pem: found junk");
  return string_value(out.take());
}

Result<Value> filter_cert_chain(std::string_view cert_type, std::string_view input) {
  ROOTSEAL_LET(certs, pem_certs("filterCertChain", input));
  ROOTSEAL_LET(chain, order_chain("filterCertChain", certs));
  if (cert_type == "leaf") {
    const Cert& c = *chain.front();
    if (c.aki && !same_id(c.aki, c.ski)) return pem_value({&c});
  } else if (cert_type == "intermediate") {
    std::vector<const Cert*> mid;
    for (std::size_t i = 1; i < chain.size() && !is_root(*chain[i]); ++i) mid.push_back(chain[i]);
    return pem_value(mid);
  } else if (cert_type == "root") {
    if (is_root(*chain.back())) return pem_value({chain.back()});
  }
  return string_value(std::string_view());
}

Result<Value> cert_sans(std::string_view input) {
  constexpr std::string_view fn = "certSANs";
  auto [block, rest] = pem_decode(trim_junk(input));
  if (!block) return fail(fn, "failed to decode PEM block");
  auto c = parse_cert(fn, block->bytes.span());
  if (!c) return fail(fn, "failed to parse certificate");
  int crit = 0;
  NamesPtr names(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(c->x.get(), NID_subject_alt_name, &crit, nullptr)));
  if (!names && crit != -1) return fail(fn, "failed to parse certificate");
  List dns, ips, emails, uris;
  const auto text = [](const ASN1_STRING* s) {
    return std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                            static_cast<std::size_t>(ASN1_STRING_length(s)));
  };
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names.get(), i);
    switch (g->type) {
      case GEN_DNS:
      case GEN_EMAIL:
      case GEN_URI: {
        const std::string_view s = text(g->d.ia5);
        if (!ascii(s)) return fail(fn, "failed to parse certificate");
        (g->type == GEN_DNS ? dns : g->type == GEN_EMAIL ? emails : uris).push_back(string_value(s));
        break;
      }
      case GEN_IPADD: {
        const std::string_view b = text(g->d.iPAddress);
        const auto byte = [&](auto k) { return static_cast<unsigned char>(b[static_cast<std::size_t>(k)]); };
        std::string out;
        // Go's net.IP String: dotted IPv4 (also for an IPv4-mapped IPv6
        // address), else IPv6 with the longest run (two or more) of zero
        // groups as "::".
        const bool mapped = b.size() == 16 && std::all_of(b.begin(), b.begin() + 10, [](char ch) { return ch == 0; }) &&
                            byte(10) == 0xff && byte(11) == 0xff;
        if (b.size() == 4 || mapped) {
          const std::size_t o = b.size() - 4;
          out = std::to_string(byte(o)) + "." + std::to_string(byte(o + 1)) + "." + std::to_string(byte(o + 2)) + "." +
                std::to_string(byte(o + 3));
        } else if (b.size() == 16) {
          int best = -1, best_len = 0;
          for (int k = 0; k < 8;) {
            int e = k;
            while (e < 8 && byte(2 * e) == 0 && byte(2 * e + 1) == 0) ++e;
            if (e - k > best_len && e - k >= 2) {
              best = k;
              best_len = e - k;
            }
            k = e == k ? k + 1 : e;
          }
          char hex[8];
          for (int k = 0; k < 8; ++k) {
            if (k == best) {
              out += "::";
              k += best_len - 1;
              continue;
            }
            if (!out.empty() && out.back() != ':') out += ':';
            std::snprintf(hex, sizeof hex, "%x", (byte(2 * k) << 8) | byte(2 * k + 1));
            out += hex;
          }
        } else {
          return fail(fn, "failed to parse certificate");
        }
        ips.push_back(string_value(out));
        break;
      }
      default:
        break;
    }
  }
  List all;
  for (List* l : {&dns, &ips, &emails, &uris}) all.insert(all.end(), l->begin(), l->end());
  return list_value(std::move(all), true);
}

Result<Value> pkcs12_key(std::string_view fn, std::string_view pass, std::string_view input) {
  ROOTSEAL_LET(p, pkcs12_decode(fn, pass, input, "unable to decode pkcs12 with password"));
  ROOTSEAL_LET(der, pkcs8_der(fn, p.key.get()));
  return pem_of("PRIVATE KEY", der);
}

Result<Value> pkcs12_cert(std::string_view fn, std::string_view pass, std::string_view input) {
  ROOTSEAL_LET(p, pkcs12_decode(fn, pass, input, "unable to decode pkcs12 certificate with password"));
  // The chain ordered when it can be; else as the file has it.
  auto ordered = order_chain(fn, p.certs);
  if (ordered) return pem_value(*ordered);
  std::vector<const Cert*> as_is;
  for (const auto& c : p.certs) as_is.push_back(&c);
  return pem_value(as_is);
}

Result<Value> pem_to_pkcs12(std::string_view fn, std::string_view cert, std::string_view key, std::string_view pass,
                            bool full) {
  // Where ESO's Go dereferences a missing PEM block, the call fails (Go's
  // template reports the recovered panic).
  constexpr std::string_view kNoBlock = "runtime error: invalid memory address or nil pointer dereference";
  auto [block, rest] = pem_decode(cert);
  if (!block) return fail(fn, kNoBlock);
  ROOTSEAL_LET(leaf, parse_cert(fn, block->bytes.span()));
  std::unique_ptr<STACK_OF(X509), CertsFree> ca(sk_X509_new_null());
  if (!ca) return fail(fn, "out of memory");
  if (full) {
    while (!rest.empty()) {
      auto [b, r] = pem_decode(rest);
      if (!b) return fail(fn, kNoBlock);
      rest = r;
      ROOTSEAL_LET(c, parse_cert(fn, b->bytes.span()));
      if (sk_X509_push(ca.get(), c.x.get()) <= 0) return fail(fn, "out of memory");
      c.x.release();
    }
  }
  auto [kb, krest] = pem_decode(key);
  if (!kb) return fail(fn, kNoBlock);
  PkeyPtr k = parse_private_key(kb->bytes.span());
  if (!k) return fail(fn, "unable to parse private key type");
  if (pass.find('\0') != std::string_view::npos) return fail(fn, "a password with a NUL character is not supported");
  // go-pkcs12's Modern: PBES2 (AES-256-CBC, PBKDF2-HMAC-SHA256) for the key
  // and the certificates, 2048 iterations, a SHA-256 MAC with a 16-byte salt.
  const kms::SecureBytes pw_z = nul_terminated(pass);
  const char* pwz = reinterpret_cast<const char*>(pw_z.data());
  // As go-pkcs12 lays the file out: the certificates (the first with a
  // localKeyId, the SHA-1 of its DER) in an encrypted safe, the shrouded key
  // with the same localKeyId in a plain one. As in go-pkcs12, the key is not
  // checked against the certificate.
  unsigned char key_id[20];
  unsigned int key_id_len = 0;
  std::unique_ptr<STACK_OF(PKCS12_SAFEBAG), BagsFree> cert_bags, key_bags;
  std::unique_ptr<STACK_OF(PKCS7), SafesFree> safes;
  STACK_OF(PKCS12_SAFEBAG)* cb = nullptr;
  STACK_OF(PKCS12_SAFEBAG)* kb2 = nullptr;
  STACK_OF(PKCS7)* sf = nullptr;
  const auto encode_failed = [&] { return fail(fn, "pkcs12: the certificate and the key cannot be encoded"); };
  if (X509_digest(leaf.x.get(), EVP_sha1(), key_id, &key_id_len) != 1) return encode_failed();
  PKCS12_SAFEBAG* leaf_bag = PKCS12_add_cert(&cb, leaf.x.get());
  cert_bags.reset(cb);
  if (leaf_bag == nullptr || PKCS12_add_localkeyid(leaf_bag, key_id, static_cast<int>(key_id_len)) != 1)
    return encode_failed();
  for (int i = 0; i < sk_X509_num(ca.get()); ++i) {
    if (PKCS12_add_cert(&cb, sk_X509_value(ca.get(), i)) == nullptr) return encode_failed();
  }
  PKCS12_SAFEBAG* key_bag = PKCS12_add_key_ex(&kb2, k.get(), 0, 2048, NID_aes_256_cbc, pwz, nullptr, nullptr);
  key_bags.reset(kb2);
  if (key_bag == nullptr || PKCS12_add_localkeyid(key_bag, key_id, static_cast<int>(key_id_len)) != 1)
    return encode_failed();
  const int cert_safe = PKCS12_add_safe_ex(&sf, cert_bags.get(), NID_aes_256_cbc, 2048, pwz, nullptr, nullptr);
  safes.reset(sf);
  if (cert_safe != 1 || PKCS12_add_safe_ex(&sf, key_bags.get(), -1, 0, nullptr, nullptr, nullptr) != 1)
    return encode_failed();
  return seal_pkcs12(fn, safes.get(), pass, pwz);
}

Result<Value> pem_truststore_to_pkcs12(std::string_view fn, std::string_view certs, std::string_view pass) {
  // ESO's parseCaCerts: PEM blocks until nothing is left (text after the
  // last block that is no block: Go dereferences the missing block).
  constexpr std::string_view kNoBlock = "runtime error: invalid memory address or nil pointer dereference";
  if (pass.find('\0') != std::string_view::npos) return fail(fn, "a password with a NUL character is not supported");
  std::vector<Cert> cas;
  for (std::string_view rest = certs; !rest.empty();) {
    auto [b, r] = pem_decode(rest);
    if (!b) return fail(fn, kNoBlock);
    rest = r;
    ROOTSEAL_LET(c, parse_cert(fn, b->bytes.span()));
    cas.push_back(std::move(c));
  }
  // go-pkcs12's Modern.EncodeTrustStore: one safe, encrypted as the
  // certificates of pemToPkcs12, of certificate bags each with the Java
  // trusted key usage attribute (2.16.840.1.113894.746875.1.1 = {
  // anyExtendedKeyUsage }) and the subject as its friendlyName.
  const kms::SecureBytes pw_z = nul_terminated(pass);
  const char* pwz = reinterpret_cast<const char*>(pw_z.data());
  const auto encode_failed = [&] { return fail(fn, "pkcs12: the certificates cannot be encoded"); };
  std::unique_ptr<STACK_OF(PKCS12_SAFEBAG), BagsFree> bags(sk_PKCS12_SAFEBAG_new_null());
  std::unique_ptr<ASN1_OBJECT, Deleter<ASN1_OBJECT_free>> any_eku(OBJ_txt2obj("2.5.29.37.0", 1));
  if (!bags || !any_eku) return encode_failed();
  for (const auto& c : cas) {
    STACK_OF(PKCS12_SAFEBAG)* cb = bags.get();
    PKCS12_SAFEBAG* bag = PKCS12_add_cert(&cb, c.x.get());
    if (bag == nullptr) return encode_failed();
    ROOTSEAL_LET(subject, go_name_string(fn, X509_get_subject_name(c.x.get())));
    ROOTSEAL_LET(bmp, bmp_string(fn, view(subject)));
    if (PKCS12_add1_attr_by_txt(bag, "2.16.840.1.113894.746875.1.1", V_ASN1_OBJECT,
                                reinterpret_cast<const unsigned char*>(any_eku.get()), -1) != 1 ||
        PKCS12_add1_attr_by_NID(bag, NID_friendlyName, V_ASN1_BMPSTRING, bmp.data(), static_cast<int>(bmp.size())) != 1)
      return encode_failed();
  }
  std::unique_ptr<STACK_OF(PKCS7), SafesFree> safes;
  STACK_OF(PKCS7)* sf = nullptr;
  const int added = PKCS12_add_safe_ex(&sf, bags.get(), NID_aes_256_cbc, 2048, pwz, nullptr, nullptr);
  safes.reset(sf);
  if (added != 1) return encode_failed();
  return seal_pkcs12(fn, safes.get(), pass, pwz);
}

Result<Value> jwk_pem(std::string_view fn, std::string_view jwk, bool private_key) {
  auto doc = from_json(jwk);
  if (!doc || doc->kind != Value::Kind::map) return fail(fn, "failed to parse key: the value is not a JSON object");
  const Map& m = *doc->m;
  const auto kty_it = m.find(std::string_view("kty"));
  if (kty_it == m.end() || kty_it->second.kind != Value::Kind::string)
    return fail(fn, "failed to parse key: invalid key type");
  const std::string_view kty = kty_it->second.str();
  // Go's x509 marshals a private key (jwx's Raw of a JWK with "d") only as
  // PKCS#8, a public key only as PKIX.
  const bool has_d = m.contains(std::string_view("d"));
  if (has_d != private_key) {
    return fail(fn, private_key ? "x509: unknown key type while marshaling PKCS#8 (the JWK has no private part)"
                                : "x509: only public keys are supported (the JWK has a private part)");
  }
  PkeyPtr key;
  if (kty == "RSA") {
    ROOTSEAL_TRY_ASSIGN(key, jwk_rsa(fn, m, private_key));
  } else if (kty == "EC") {
    ROOTSEAL_TRY_ASSIGN(key, jwk_ec(fn, m, private_key));
  } else if (kty == "OKP") {
    ROOTSEAL_TRY_ASSIGN(key, jwk_okp(fn, m, private_key));
  } else if (kty == "oct") {
    return fail(fn, "x509: unsupported key type (a symmetric JWK)");
  } else {
    return fail(fn, "failed to parse key: invalid key type");
  }
  if (private_key) {
    ROOTSEAL_LET(der, pkcs8_der(fn, key.get()));
    return pem_of("PRIVATE KEY", der);
  }
  const int len = i2d_PUBKEY(key.get(), nullptr);
  if (len <= 0) return fail(fn, "x509: failed to marshal public key");
  kms::SecureBytes der(static_cast<std::size_t>(len));
  unsigned char* p = der.data();
  i2d_PUBKEY(key.get(), &p);
  return pem_of("PUBLIC KEY", der);
}

Result<Value> rsa_decrypt(std::string_view scheme, std::string_view hash, std::string_view in, std::string_view key) {
  constexpr std::string_view fn = "rsaDecrypt";
  if (scheme == "None") return string_value(in);
  if (scheme != "RSA-OAEP") {
    // ESO's message names the scheme: only one written in the template is quoted.
    return fail(fn, "decryption scheme is not supported (\"None\" and \"RSA-OAEP\" are)");
  }
  auto [block, rest] = pem_decode(key);
  if (!block) return fail(fn, "failed to decode PEM block");
  PkeyPtr k = parse_private_key(block->bytes.span());
  if (!k) return fail(fn, "could not parse private key: unable to parse private key type");
  if (EVP_PKEY_get_base_id(k.get()) != EVP_PKEY_RSA) return fail(fn, "could not parse RSA private key");
  const EVP_MD* md = hash == "SHA1" ? EVP_sha1() : hash == "SHA512" ? EVP_sha512() : EVP_sha256();
  CtxPtr ctx(EVP_PKEY_CTX_new(k.get(), nullptr));
  std::size_t len = 0;
  if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), md) != 1 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md) != 1 ||
      EVP_PKEY_decrypt(ctx.get(), nullptr, &len, uc(in), in.size()) != 1)
    return fail(fn, "error decrypting data with RSA: crypto/rsa: decryption error");
  kms::SecureBytes out(len);
  if (EVP_PKEY_decrypt(ctx.get(), out.data(), &len, uc(in), in.size()) != 1)
    return fail(fn, "error decrypting data with RSA: crypto/rsa: decryption error");
  return string_value(kms::SecureBytes::copy_of(std::span<const std::uint8_t>(out.data(), len)));
}

}  // namespace rootseal::sync::tmpl::eso
