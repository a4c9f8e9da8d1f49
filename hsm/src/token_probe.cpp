// rootseal::hsm — probe_token and the mechanism catalog (pkcs11_catalog.hpp).
#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "rootseal/hsm/token_probe.hpp"
#include "pkcs11_catalog.hpp"  // last: pulls in pkcs11.h

namespace rootseal::hsm {

namespace detail {

namespace {

struct Named {
  CK_MECHANISM_TYPE type;
  const char* name;
};

// Every mechanism type p11-kit's pkcs11.h defines (the first name of each
// value), plus PKCS#11 v3.0's CKM_AES_KEY_WRAP_KWP, which it lacks.
// clang-format off
#define N(m) Named{m, #m}
constexpr Named kMechanisms[] = {
    N(CKM_RSA_PKCS_KEY_PAIR_GEN), N(CKM_RSA_PKCS), N(CKM_RSA_9796), N(CKM_RSA_X_509), N(CKM_MD2_RSA_PKCS),
    N(CKM_MD5_RSA_PKCS), N(CKM_SHA1_RSA_PKCS), N(CKM_RIPEMD128_RSA_PKCS), N(CKM_RIPEMD160_RSA_PKCS),
    N(CKM_RSA_PKCS_OAEP), N(CKM_RSA_X9_31_KEY_PAIR_GEN), N(CKM_RSA_X9_31), N(CKM_SHA1_RSA_X9_31),
    N(CKM_RSA_PKCS_PSS), N(CKM_SHA1_RSA_PKCS_PSS), N(CKM_DSA_KEY_PAIR_GEN), N(CKM_DSA), N(CKM_DSA_SHA1),
    N(CKM_DSA_SHA224), N(CKM_DSA_SHA256), N(CKM_DSA_SHA384), N(CKM_DSA_SHA512), N(CKM_DH_PKCS_KEY_PAIR_GEN),
    N(CKM_DH_PKCS_DERIVE), N(CKM_X9_42_DH_KEY_PAIR_GEN), N(CKM_X9_42_DH_DERIVE), N(CKM_X9_42_DH_HYBRID_DERIVE),
    N(CKM_X9_42_MQV_DERIVE), N(CKM_SHA256_RSA_PKCS), N(CKM_SHA384_RSA_PKCS), N(CKM_SHA512_RSA_PKCS),
    N(CKM_SHA256_RSA_PKCS_PSS), N(CKM_SHA384_RSA_PKCS_PSS), N(CKM_SHA512_RSA_PKCS_PSS), N(CKM_SHA512_224),
    N(CKM_SHA512_224_HMAC), N(CKM_SHA512_224_HMAC_GENERAL), N(CKM_SHA512_224_KEY_DERIVATION), N(CKM_SHA512_256),
    N(CKM_SHA512_256_HMAC), N(CKM_SHA512_256_HMAC_GENERAL), N(CKM_SHA512_256_KEY_DERIVATION), N(CKM_SHA512_T),
    N(CKM_SHA512_T_HMAC), N(CKM_SHA512_T_HMAC_GENERAL), N(CKM_SHA512_T_KEY_DERIVATION), N(CKM_RC2_KEY_GEN),
    N(CKM_RC2_ECB), N(CKM_RC2_CBC), N(CKM_RC2_MAC), N(CKM_RC2_MAC_GENERAL), N(CKM_RC2_CBC_PAD), N(CKM_RC4_KEY_GEN),
    N(CKM_RC4), N(CKM_DES_KEY_GEN), N(CKM_DES_ECB), N(CKM_DES_CBC), N(CKM_DES_MAC), N(CKM_DES_MAC_GENERAL),
    N(CKM_DES_CBC_PAD), N(CKM_DES2_KEY_GEN), N(CKM_DES3_KEY_GEN), N(CKM_DES3_ECB), N(CKM_DES3_CBC),
    N(CKM_DES3_MAC), N(CKM_DES3_MAC_GENERAL), N(CKM_DES3_CBC_PAD), N(CKM_DES3_CMAC_GENERAL), N(CKM_DES3_CMAC),
    N(CKM_CDMF_KEY_GEN), N(CKM_CDMF_ECB), N(CKM_CDMF_CBC), N(CKM_CDMF_MAC), N(CKM_CDMF_MAC_GENERAL),
    N(CKM_CDMF_CBC_PAD), N(CKM_DES_OFB64), N(CKM_DES_OFB8), N(CKM_DES_CFB64), N(CKM_DES_CFB8), N(CKM_MD2),
    N(CKM_MD2_HMAC), N(CKM_MD2_HMAC_GENERAL), N(CKM_MD5), N(CKM_MD5_HMAC), N(CKM_MD5_HMAC_GENERAL), N(CKM_SHA_1),
    N(CKM_SHA_1_HMAC), N(CKM_SHA_1_HMAC_GENERAL), N(CKM_RIPEMD128), N(CKM_RIPEMD128_HMAC),
    N(CKM_RIPEMD128_HMAC_GENERAL), N(CKM_RIPEMD160), N(CKM_RIPEMD160_HMAC), N(CKM_RIPEMD160_HMAC_GENERAL),
    N(CKM_SHA256), N(CKM_SHA256_HMAC), N(CKM_SHA256_HMAC_GENERAL), N(CKM_SHA384), N(CKM_SHA384_HMAC),
    N(CKM_SHA384_HMAC_GENERAL), N(CKM_SHA512), N(CKM_SHA512_HMAC), N(CKM_SHA512_HMAC_GENERAL),
    N(CKM_SECURID_KEY_GEN), N(CKM_SECURID), N(CKM_HOTP_KEY_GEN), N(CKM_HOTP), N(CKM_ACTI), N(CKM_ACTI_KEY_GEN),
    N(CKM_CAST_KEY_GEN), N(CKM_CAST_ECB), N(CKM_CAST_CBC), N(CKM_CAST_MAC), N(CKM_CAST_MAC_GENERAL),
    N(CKM_CAST_CBC_PAD), N(CKM_CAST3_KEY_GEN), N(CKM_CAST3_ECB), N(CKM_CAST3_CBC), N(CKM_CAST3_MAC),
    N(CKM_CAST3_MAC_GENERAL), N(CKM_CAST3_CBC_PAD), N(CKM_CAST5_KEY_GEN), N(CKM_CAST5_ECB), N(CKM_CAST5_CBC),
    N(CKM_CAST5_MAC), N(CKM_CAST5_MAC_GENERAL), N(CKM_CAST5_CBC_PAD), N(CKM_RC5_KEY_GEN), N(CKM_RC5_ECB),
    N(CKM_RC5_CBC), N(CKM_RC5_MAC), N(CKM_RC5_MAC_GENERAL), N(CKM_RC5_CBC_PAD), N(CKM_IDEA_KEY_GEN),
    N(CKM_IDEA_ECB), N(CKM_IDEA_CBC), N(CKM_IDEA_MAC), N(CKM_IDEA_MAC_GENERAL), N(CKM_IDEA_CBC_PAD),
    N(CKM_GENERIC_SECRET_KEY_GEN), N(CKM_CONCATENATE_BASE_AND_KEY), N(CKM_CONCATENATE_BASE_AND_DATA),
    N(CKM_CONCATENATE_DATA_AND_BASE), N(CKM_XOR_BASE_AND_DATA), N(CKM_EXTRACT_KEY_FROM_KEY),
    N(CKM_SSL3_PRE_MASTER_KEY_GEN), N(CKM_SSL3_MASTER_KEY_DERIVE), N(CKM_SSL3_KEY_AND_MAC_DERIVE),
    N(CKM_SSL3_MASTER_KEY_DERIVE_DH), N(CKM_TLS_PRE_MASTER_KEY_GEN), N(CKM_TLS_MASTER_KEY_DERIVE),
    N(CKM_TLS_KEY_AND_MAC_DERIVE), N(CKM_TLS_MASTER_KEY_DERIVE_DH), N(CKM_TLS_PRF), N(CKM_SSL3_MD5_MAC),
    N(CKM_SSL3_SHA1_MAC), N(CKM_MD5_KEY_DERIVATION), N(CKM_MD2_KEY_DERIVATION), N(CKM_SHA1_KEY_DERIVATION),
    N(CKM_SHA256_KEY_DERIVATION), N(CKM_SHA384_KEY_DERIVATION), N(CKM_SHA512_KEY_DERIVATION),
    N(CKM_PBE_MD2_DES_CBC), N(CKM_PBE_MD5_DES_CBC), N(CKM_PBE_MD5_CAST_CBC), N(CKM_PBE_MD5_CAST3_CBC),
    N(CKM_PBE_MD5_CAST5_CBC), N(CKM_PBE_SHA1_CAST5_CBC), N(CKM_PBE_SHA1_RC4_128), N(CKM_PBE_SHA1_RC4_40),
    N(CKM_PBE_SHA1_DES3_EDE_CBC), N(CKM_PBE_SHA1_DES2_EDE_CBC), N(CKM_PBE_SHA1_RC2_128_CBC),
    N(CKM_PBE_SHA1_RC2_40_CBC), N(CKM_PKCS5_PBKD2), N(CKM_PBA_SHA1_WITH_SHA1_HMAC), N(CKM_WTLS_PRE_MASTER_KEY_GEN),
    N(CKM_WTLS_MASTER_KEY_DERIVE), N(CKM_WTLS_MASTER_KEY_DERIVE_DH_ECC), N(CKM_WTLS_PRF),
    N(CKM_WTLS_SERVER_KEY_AND_MAC_DERIVE), N(CKM_WTLS_CLIENT_KEY_AND_MAC_DERIVE), N(CKM_TLS10_MAC_SERVER),
    N(CKM_TLS10_MAC_CLIENT), N(CKM_TLS12_MAC), N(CKM_TLS12_KDF), N(CKM_TLS12_MASTER_KEY_DERIVE),
    N(CKM_TLS12_KEY_AND_MAC_DERIVE), N(CKM_TLS12_MASTER_KEY_DERIVE_DH), N(CKM_TLS12_KEY_SAFE_DERIVE),
    N(CKM_TLS_MAC), N(CKM_TLS_KDF), N(CKM_KEY_WRAP_LYNKS), N(CKM_KEY_WRAP_SET_OAEP), N(CKM_CMS_SIG),
    N(CKM_KIP_DERIVE), N(CKM_KIP_WRAP), N(CKM_KIP_MAC), N(CKM_ARIA_KEY_GEN), N(CKM_ARIA_ECB), N(CKM_ARIA_CBC),
    N(CKM_ARIA_MAC), N(CKM_ARIA_MAC_GENERAL), N(CKM_ARIA_CBC_PAD), N(CKM_ARIA_ECB_ENCRYPT_DATA),
    N(CKM_ARIA_CBC_ENCRYPT_DATA), N(CKM_SEED_KEY_GEN), N(CKM_SEED_ECB), N(CKM_SEED_CBC), N(CKM_SEED_MAC),
    N(CKM_SEED_MAC_GENERAL), N(CKM_SEED_CBC_PAD), N(CKM_SEED_ECB_ENCRYPT_DATA), N(CKM_SEED_CBC_ENCRYPT_DATA),
    N(CKM_SKIPJACK_KEY_GEN), N(CKM_SKIPJACK_ECB64), N(CKM_SKIPJACK_CBC64), N(CKM_SKIPJACK_OFB64),
    N(CKM_SKIPJACK_CFB64), N(CKM_SKIPJACK_CFB32), N(CKM_SKIPJACK_CFB16), N(CKM_SKIPJACK_CFB8),
    N(CKM_SKIPJACK_WRAP), N(CKM_SKIPJACK_PRIVATE_WRAP), N(CKM_SKIPJACK_RELAYX), N(CKM_KEA_KEY_PAIR_GEN),
    N(CKM_KEA_KEY_DERIVE), N(CKM_FORTEZZA_TIMESTAMP), N(CKM_BATON_KEY_GEN), N(CKM_BATON_ECB128),
    N(CKM_BATON_ECB96), N(CKM_BATON_CBC128), N(CKM_BATON_COUNTER), N(CKM_BATON_SHUFFLE), N(CKM_BATON_WRAP),
    N(CKM_ECDSA_KEY_PAIR_GEN), N(CKM_ECDSA), N(CKM_ECDSA_SHA1), N(CKM_ECDSA_SHA224), N(CKM_ECDSA_SHA256),
    N(CKM_ECDSA_SHA384), N(CKM_ECDSA_SHA512), N(CKM_ECDH1_DERIVE), N(CKM_ECDH1_COFACTOR_DERIVE),
    N(CKM_ECMQV_DERIVE), N(CKM_ECDH_AES_KEY_WRAP), N(CKM_RSA_AES_KEY_WRAP), N(CKM_JUNIPER_KEY_GEN),
    N(CKM_JUNIPER_ECB128), N(CKM_JUNIPER_CBC128), N(CKM_JUNIPER_COUNTER), N(CKM_JUNIPER_SHUFFLE),
    N(CKM_JUNIPER_WRAP), N(CKM_FASTHASH), N(CKM_AES_KEY_GEN), N(CKM_AES_ECB), N(CKM_AES_CBC), N(CKM_AES_MAC),
    N(CKM_AES_MAC_GENERAL), N(CKM_AES_CBC_PAD), N(CKM_AES_CTR), N(CKM_AES_GCM), N(CKM_AES_CCM), N(CKM_AES_CTS),
    N(CKM_AES_CMAC), N(CKM_AES_CMAC_GENERAL), N(CKM_AES_XCBC_MAC), N(CKM_AES_XCBC_MAC_96), N(CKM_AES_GMAC),
    N(CKM_BLOWFISH_KEY_GEN), N(CKM_BLOWFISH_CBC), N(CKM_TWOFISH_KEY_GEN), N(CKM_TWOFISH_CBC),
    N(CKM_BLOWFISH_CBC_PAD), N(CKM_TWOFISH_CBC_PAD), N(CKM_DES_ECB_ENCRYPT_DATA), N(CKM_DES_CBC_ENCRYPT_DATA),
    N(CKM_DES3_ECB_ENCRYPT_DATA), N(CKM_DES3_CBC_ENCRYPT_DATA), N(CKM_AES_ECB_ENCRYPT_DATA),
    N(CKM_AES_CBC_ENCRYPT_DATA), N(CKM_GOSTR3410_KEY_PAIR_GEN), N(CKM_GOSTR3410), N(CKM_GOSTR3410_WITH_GOSTR3411),
    N(CKM_GOSTR3410_KEY_WRAP), N(CKM_GOSTR3410_DERIVE), N(CKM_GOSTR3411), N(CKM_GOSTR3411_HMAC),
    N(CKM_GOST28147_KEY_GEN), N(CKM_GOST28147_ECB), N(CKM_GOST28147), N(CKM_GOST28147_MAC),
    N(CKM_GOST28147_KEY_WRAP), N(CKM_DSA_PARAMETER_GEN), N(CKM_DH_PKCS_PARAMETER_GEN),
    N(CKM_X9_42_DH_PARAMETER_GEN), N(CKM_DSA_PROBABLISTIC_PARAMETER_GEN), N(CKM_DSA_SHAWE_TAYLOR_PARAMETER_GEN),
    N(CKM_AES_OFB), N(CKM_AES_CFB64), N(CKM_AES_CFB8), N(CKM_AES_CFB128), N(CKM_AES_CFB1), N(CKM_SHA224),
    N(CKM_SHA224_HMAC), N(CKM_SHA224_HMAC_GENERAL), N(CKM_SHA224_RSA_PKCS), N(CKM_SHA224_RSA_PKCS_PSS),
    N(CKM_SHA224_KEY_DERIVATION), N(CKM_CAMELLIA_KEY_GEN), N(CKM_CAMELLIA_ECB), N(CKM_CAMELLIA_CBC),
    N(CKM_CAMELLIA_MAC), N(CKM_CAMELLIA_MAC_GENERAL), N(CKM_CAMELLIA_CBC_PAD), N(CKM_CAMELLIA_ECB_ENCRYPT_DATA),
    N(CKM_CAMELLIA_CBC_ENCRYPT_DATA), N(CKM_CAMELLIA_CTR), N(CKM_AES_KEY_WRAP), N(CKM_AES_KEY_WRAP_PAD),
    N(CKM_RSA_PKCS_TPM_1_1), N(CKM_RSA_PKCS_OAEP_TPM_1_1), N(CKM_EC_EDWARDS_KEY_PAIR_GEN), N(CKM_EDDSA),
    Named{0x210B, "CKM_AES_KEY_WRAP_KWP"},
};
// clang-format on
#undef N

std::string hex(unsigned long v) {
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "0x%lx", v);
  return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
}

using FlagName = std::pair<CK_FLAGS, const char*>;

// The names of the bits of `flags` in `table`; bits not in it as one "other_flags=0x...".
std::vector<std::string> flag_names(CK_FLAGS flags, std::span<const FlagName> table) {
  std::vector<std::string> out;
  CK_FLAGS rest = flags;
  for (const auto& [bit, name] : table) {
    if ((flags & bit) != 0) out.emplace_back(name);
    rest &= ~bit;
  }
  if (rest != 0) out.push_back("other_flags=" + hex(rest));
  return out;
}

// The mechanisms that a root key can be built on, today or with issue 19's fallbacks.
constexpr CK_MECHANISM_TYPE kRelevant[] = {
    CKM_AES_KEY_GEN,           CKM_AES_KEY_WRAP_PAD, detail::kMechKwpV3, CKM_AES_KEY_WRAP, CKM_AES_GCM,
    CKM_AES_CBC_PAD,           CKM_AES_CBC,          CKM_AES_ECB,        CKM_SHA256_HMAC,  CKM_GENERIC_SECRET_KEY_GEN,
    CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS_OAEP};

}  // namespace

std::string mechanism_name(CK_MECHANISM_TYPE type) {
  for (const Named& n : kMechanisms) {
    if (n.type == type) return n.name;
  }
  if (type >= CKM_VENDOR_DEFINED) return "CKM_VENDOR_DEFINED+" + hex(type - CKM_VENDOR_DEFINED);
  return "CKM_" + hex(type);
}

std::vector<std::string> mechanism_flag_names(CK_FLAGS flags) {
  static constexpr FlagName kFlags[] = {
      {CKF_HW, "hw"},
      {CKF_ENCRYPT, "encrypt"},
      {CKF_DECRYPT, "decrypt"},
      {CKF_DIGEST, "digest"},
      {CKF_SIGN, "sign"},
      {CKF_SIGN_RECOVER, "sign_recover"},
      {CKF_VERIFY, "verify"},
      {CKF_VERIFY_RECOVER, "verify_recover"},
      {CKF_GENERATE, "generate"},
      {CKF_GENERATE_KEY_PAIR, "generate_key_pair"},
      {CKF_WRAP, "wrap"},
      {CKF_UNWRAP, "unwrap"},
      {CKF_DERIVE, "derive"},
      // Elliptic-curve capabilities (CKF_EC_F_P ... CKF_EC_CURVENAME).
      {0x00100000UL, "ec_f_p"},
      {0x00200000UL, "ec_f_2m"},
      {0x00400000UL, "ec_parameters"},
      {0x00800000UL, "ec_oid"},
      {0x01000000UL, "ec_uncompress"},
      {0x02000000UL, "ec_compress"},
      {0x04000000UL, "ec_curvename"},
  };
  return flag_names(flags, kFlags);
}

std::string mechanism_flag_list(CK_FLAGS flags) {
  std::string out;
  for (const auto& f : mechanism_flag_names(flags)) out += (out.empty() ? "" : ", ") + f;
  return out;
}

std::string relevant_mechanisms(CK_FUNCTION_LIST* api, CK_SLOT_ID slot) {
  std::string out;
  for (CK_MECHANISM_TYPE m : kRelevant) {
    CK_MECHANISM_INFO mi{};
    if (api->C_GetMechanismInfo(slot, m, &mi) != CKR_OK) continue;
    const std::string flags = mechanism_flag_list(mi.flags);
    out += (out.empty() ? "" : ", ") + mechanism_name(m) + " (" + (flags.empty() ? "no flags" : flags) + ")";
  }
  return out.empty() ? "none of the AES, RSA or HMAC mechanisms" : out;
}

std::string mechanism_refusal_detail(CK_FUNCTION_LIST* api, CK_SLOT_ID slot, const std::string& module,
                                     const std::string& token_label) {
  const std::string command = "rootseal hsm probe --module " + module + " --token " + token_label;
  return "; among the AES, RSA and HMAC mechanisms it offers " + relevant_mechanisms(api, slot) +
         ". rootseal needs CKM_AES_KEY_WRAP_PAD (wrap, unwrap), CKM_AES_GCM (encrypt, decrypt), CKM_AES_CBC_PAD "
         "(encrypt, decrypt) with CKM_SHA256_HMAC (sign, verify), or CKM_RSA_PKCS_OAEP (encrypt, decrypt), each with "
         "its key generation; `" +
         command + "` lists every mechanism and which root mechanisms would do (docs/hsm.md)";
}

}  // namespace detail

namespace {

using kms::Errc;
using kms::fail;

std::string trimmed(const unsigned char* p, std::size_t n) {
  while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\0')) --n;
  return std::string(reinterpret_cast<const char*>(p), n);
}

std::string version(CK_VERSION v) { return std::to_string(v.major) + "." + std::to_string(v.minor); }

std::vector<std::string> token_flag_names(CK_FLAGS flags) {
  static constexpr detail::FlagName kFlags[] = {
      {CKF_RNG, "rng"},
      {CKF_WRITE_PROTECTED, "write_protected"},
      {CKF_LOGIN_REQUIRED, "login_required"},
      {CKF_USER_PIN_INITIALIZED, "user_pin_initialized"},
      {CKF_RESTORE_KEY_NOT_NEEDED, "restore_key_not_needed"},
      {CKF_CLOCK_ON_TOKEN, "clock_on_token"},
      {CKF_PROTECTED_AUTHENTICATION_PATH, "protected_authentication_path"},
      {CKF_DUAL_CRYPTO_OPERATIONS, "dual_crypto_operations"},
      {CKF_TOKEN_INITIALIZED, "token_initialized"},
      {CKF_SECONDARY_AUTHENTICATION, "secondary_authentication"},
      {CKF_USER_PIN_COUNT_LOW, "user_pin_count_low"},
      {CKF_USER_PIN_FINAL_TRY, "user_pin_final_try"},
      {CKF_USER_PIN_LOCKED, "user_pin_locked"},
      {CKF_USER_PIN_TO_BE_CHANGED, "user_pin_to_be_changed"},
      {CKF_SO_PIN_COUNT_LOW, "so_pin_count_low"},
      {CKF_SO_PIN_FINAL_TRY, "so_pin_final_try"},
      {CKF_SO_PIN_LOCKED, "so_pin_locked"},
      {CKF_SO_PIN_TO_BE_CHANGED, "so_pin_to_be_changed"},
  };
  return detail::flag_names(flags, kFlags);
}

// One mechanism a root needs: the type and the CKF_* it must have.
struct Need {
  CK_MECHANISM_TYPE type;
  CK_FLAGS flags;
  std::uint64_t min_max_key_size;  // the token's max key size must reach this (0: no check)
};

RootMechanismVerdict verdict(const std::vector<MechanismDetails>& offered, std::string name, bool in_build,
                             std::initializer_list<Need> needs) {
  RootMechanismVerdict v;
  v.name = std::move(name);
  v.in_this_build = in_build;
  for (const Need& n : needs) {
    const std::string flags = detail::mechanism_flag_list(n.flags);
    const std::string want = detail::mechanism_name(n.type) + " (" + flags + ")";
    v.needs += (v.needs.empty() ? "" : " + ") + want;
    const auto it = std::ranges::find(offered, static_cast<std::uint64_t>(n.type), &MechanismDetails::type);
    std::string lack;
    if (it == offered.end()) {
      lack = detail::mechanism_name(n.type);
    } else if ((it->flags & n.flags) != n.flags) {
      lack = detail::mechanism_name(n.type) + " without " + flags;
    } else if (n.min_max_key_size != 0 && it->max_key_size != 0 && it->max_key_size < n.min_max_key_size) {
      lack = detail::mechanism_name(n.type) + " only up to key size " + std::to_string(it->max_key_size);
    }
    if (!lack.empty()) v.missing += (v.missing.empty() ? "" : "; ") + lack;
  }
  v.offered = v.missing.empty();
  return v;
}

}  // namespace

kms::Result<TokenProbe> probe_token(const std::filesystem::path& module, std::string_view token_label) {
  unsigned char want[32];
  if (token_label.empty() || !detail::pad_label(token_label, want)) {
    return fail(Errc::invalid_argument, "token label must be 1..32 bytes");
  }
  auto mod = detail::Module::acquire(module);
  if (!mod) return std::unexpected(mod.error());
  auto lk = (*mod)->call_lock();
  if (!(*mod)->initialized()) {
    return fail(Errc::unavailable, "PKCS#11 module " + module.string() + " is not initialized");
  }
  CK_FUNCTION_LIST* api = (*mod)->api();
  const std::string tok = "PKCS#11 token '" + std::string(token_label) + "'";

  std::vector<CK_SLOT_ID> slots;
  if (CK_RV rv = detail::slot_list(api, true, slots); rv != CKR_OK) {
    return detail::ck_fail(Errc::unavailable, "C_GetSlotList", rv);
  }
  CK_TOKEN_INFO info{};
  const std::vector<CK_SLOT_ID> matches = detail::slots_labelled(api, slots, want, info);
  if (matches.empty()) {
    return fail(Errc::not_found, tok + " not found in " + module.string() + " (" + std::to_string(slots.size()) +
                                     " slot(s) with a token present)");
  }
  if (matches.size() > 1) {
    return fail(Errc::conflict, std::to_string(matches.size()) + " tokens are labelled '" + std::string(token_label) +
                                    "'; refusing to choose one");
  }

  TokenProbe p;
  p.module = module;
  p.slot = matches.front();
  p.label = trimmed(info.label, sizeof info.label);
  p.manufacturer = trimmed(info.manufacturerID, sizeof info.manufacturerID);
  p.model = trimmed(info.model, sizeof info.model);
  p.serial = trimmed(info.serialNumber, sizeof info.serialNumber);
  p.hardware_version = version(info.hardwareVersion);
  p.firmware_version = version(info.firmwareVersion);
  p.flags = info.flags;
  p.flag_names = token_flag_names(info.flags);

  std::vector<CK_MECHANISM_TYPE> types;
  for (int attempt = 0;; ++attempt) {
    CK_ULONG n = 0;
    if (CK_RV rv = api->C_GetMechanismList(p.slot, nullptr, &n); rv != CKR_OK) {
      return detail::ck_fail(Errc::unavailable, "C_GetMechanismList", rv);
    }
    types.resize(n);
    const CK_RV rv = api->C_GetMechanismList(p.slot, types.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL && attempt < 3) continue;
    if (rv != CKR_OK) return detail::ck_fail(Errc::unavailable, "C_GetMechanismList", rv);
    types.resize(n);
    break;
  }
  for (CK_MECHANISM_TYPE t : types) {
    CK_MECHANISM_INFO mi{};
    if (CK_RV rv = api->C_GetMechanismInfo(p.slot, t, &mi); rv != CKR_OK) {
      return fail(Errc::unavailable, detail::ck_message("C_GetMechanismInfo(" + detail::mechanism_name(t) + ")", rv));
    }
    p.mechanisms.push_back(MechanismDetails{t, detail::mechanism_name(t), mi.ulMinKeySize, mi.ulMaxKeySize, mi.flags,
                                            detail::mechanism_flag_names(mi.flags)});
  }

  // AES key sizes are in bytes (32 = AES-256), RSA modulus sizes in bits.
  // aes-kwp: under PKCS#11 v3.0's CKM_AES_KEY_WRAP_KWP where offered (rootseald
  // prefers it), else under CKM_AES_KEY_WRAP_PAD.
  const bool kwp_v3 = std::any_of(p.mechanisms.begin(), p.mechanisms.end(), [](const MechanismDetails& m) {
    return m.type == detail::kMechKwpV3 && (m.flags & (CKF_WRAP | CKF_UNWRAP)) == (CKF_WRAP | CKF_UNWRAP);
  });
  p.roots.push_back(verdict(p.mechanisms, "aes-kwp", true,
                            {{kwp_v3 ? detail::kMechKwpV3 : detail::kMechKwp, CKF_WRAP | CKF_UNWRAP, 32}}));
  p.roots.push_back(verdict(p.mechanisms, "aes-gcm", true, {{CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT, 32}}));
  p.roots.push_back(
      verdict(p.mechanisms, "aes-cbc-pad-hmac", true,
              {{CKM_AES_CBC_PAD, CKF_ENCRYPT | CKF_DECRYPT, 32}, {CKM_SHA256_HMAC, CKF_SIGN | CKF_VERIFY, 0}}));
  p.roots.push_back(verdict(p.mechanisms, "rsa-oaep", true,
                            {{CKM_RSA_PKCS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR, 3072},
                             {CKM_RSA_PKCS_OAEP, CKF_ENCRYPT | CKF_DECRYPT, 3072}}));
  return p;
}

}  // namespace rootseal::hsm
