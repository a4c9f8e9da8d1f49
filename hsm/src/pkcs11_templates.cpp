// rootseal::hsm — the templates of a root's secret keys (pkcs11_templates.hpp).
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "pkcs11_templates.hpp"

namespace rootseal::hsm::detail {

bool template_refused(CK_RV rv) noexcept {
  return rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_ATTRIBUTE_READ_ONLY ||
         rv == CKR_TEMPLATE_INCONSISTENT;
}

SecretKeyTemplate SecretKeyTemplate::aes_root(Mech mech, KwpOffer kwp, std::string_view label, KeyMaker maker) {
  return SecretKeyTemplate(Role::aes, mech, kwp, label, maker);
}

SecretKeyTemplate SecretKeyTemplate::hmac(std::string_view label, KeyMaker maker) {
  return SecretKeyTemplate(Role::hmac, Mech::cbc_hmac, KwpOffer{}, label, maker);
}

SecretKeyTemplate::SecretKeyTemplate(Role role, Mech mech, KwpOffer kwp, std::string_view label, KeyMaker maker) {
  if (role == Role::hmac) {
    type_ = CKK_GENERIC_SECRET;
    signs_ = CK_TRUE;
    allowed_[allowed_n_++] = CKM_SHA256_HMAC;
  } else {
    const bool cbc = mech == Mech::cbc_hmac;
    enc_ = mech == Mech::kwp ? CK_FALSE : CK_TRUE;
    wraps_ = cbc ? CK_FALSE : CK_TRUE;
    if (cbc) allowed_[allowed_n_++] = CKM_AES_CBC_PAD;
    if (!cbc && kwp.pad) allowed_[allowed_n_++] = kMechKwp;
    if (!cbc && kwp.v3) allowed_[allowed_n_++] = kMechKwpV3;
    if (mech == Mech::gcm) allowed_[allowed_n_++] = CKM_AES_GCM;
  }
  modifiable_ = maker == KeyMaker::ceremony ? CK_TRUE : CK_FALSE;
  attrs_ = {attr(CKA_CLASS, cls_),
            attr(CKA_KEY_TYPE, type_),
            attr_bytes(CKA_LABEL, label.data(), label.size()),
            attr_bytes(CKA_ID, id_.data(), id_.size()),
            attr(CKA_TOKEN, yes_),
            attr(CKA_PRIVATE, yes_),
            attr(CKA_SENSITIVE, yes_),
            attr(CKA_EXTRACTABLE, no_),
            attr(CKA_WRAP, wraps_),
            attr(CKA_UNWRAP, wraps_),
            attr(CKA_ENCRYPT, enc_),
            attr(CKA_DECRYPT, enc_),
            attr(CKA_SIGN, signs_),
            attr(CKA_VERIFY, signs_),
            attr(CKA_DERIVE, no_)};
  required_ = attrs_.size();
  // Hardening. CKA_MODIFIABLE=true is the default: a token that refuses the
  // hardening still makes a ceremony key modifiable.
  attrs_.push_back(attr(CKA_MODIFIABLE, modifiable_));
  // CKA_COPYABLE=true is the default too, said explicitly where rotate-root
  // will copy the key.
  if (maker == KeyMaker::ceremony) attrs_.push_back(attr(CKA_COPYABLE, yes_));
  if (allowed_n_ > 0) {
    attrs_.push_back(attr_bytes(CKA_ALLOWED_MECHANISMS, allowed_.data(), allowed_n_ * sizeof(CK_MECHANISM_TYPE)));
  }
}

std::vector<CK_ATTRIBUTE> SecretKeyTemplate::for_generate() const {
  std::vector<CK_ATTRIBUTE> out(attrs_.begin(), attrs_.begin() + static_cast<std::ptrdiff_t>(required_));
  out.push_back(attr_bytes(CKA_VALUE_LEN, &len_, sizeof len_));
  out.insert(out.end(), attrs_.begin() + static_cast<std::ptrdiff_t>(required_), attrs_.end());
  return out;
}

std::vector<CK_ATTRIBUTE> SecretKeyTemplate::for_create(const void* value, std::size_t n, bool with_hardening) const {
  const std::size_t count = with_hardening ? attrs_.size() : required_;
  std::vector<CK_ATTRIBUTE> out(attrs_.begin(), attrs_.begin() + static_cast<std::ptrdiff_t>(count));
  out.push_back(attr_bytes(CKA_VALUE, value, n));
  return out;
}

RsaPairTemplate::RsaPairTemplate(std::string_view label, KeyMaker maker) {
  pub_ = {attr(CKA_CLASS, pub_cls_),
          attr(CKA_KEY_TYPE, type_),
          attr(CKA_MODULUS_BITS, bits_),
          attr_bytes(CKA_PUBLIC_EXPONENT, exponent_.data(), exponent_.size()),
          attr_bytes(CKA_LABEL, label.data(), label.size()),
          attr_bytes(CKA_ID, id_.data(), id_.size()),
          attr(CKA_TOKEN, yes_),
          attr(CKA_ENCRYPT, yes_)};
  priv_ = {attr(CKA_CLASS, priv_cls_),
           attr(CKA_KEY_TYPE, type_),
           attr_bytes(CKA_LABEL, label.data(), label.size()),
           attr_bytes(CKA_ID, id_.data(), id_.size()),
           attr(CKA_TOKEN, yes_),
           attr(CKA_PRIVATE, yes_),
           attr(CKA_SENSITIVE, yes_),
           attr(CKA_EXTRACTABLE, no_),
           attr(CKA_DECRYPT, yes_)};
  pub_required_ = pub_.size();
  priv_required_ = priv_.size();
  priv_.push_back(attr(CKA_UNWRAP, no_));
  priv_.push_back(attr(CKA_DERIVE, no_));
  // rotate-root copies a ceremony pair to its retired label; rootseald's own
  // pair is made unmodifiable (the default, CKA_MODIFIABLE=true, otherwise).
  if (maker == KeyMaker::daemon) {
    pub_.push_back(attr(CKA_MODIFIABLE, no_));
    priv_.push_back(attr(CKA_MODIFIABLE, no_));
  }
  pub_.push_back(attr(CKA_ALLOWED_MECHANISMS, allowed_));
  priv_.push_back(attr(CKA_ALLOWED_MECHANISMS, allowed_));
}

std::vector<CK_ATTRIBUTE> RsaPairTemplate::pub(bool with_hardening) const {
  const std::size_t n = with_hardening ? pub_.size() : pub_required_;
  return {pub_.begin(), pub_.begin() + static_cast<std::ptrdiff_t>(n)};
}

std::vector<CK_ATTRIBUTE> RsaPairTemplate::priv(bool with_hardening) const {
  const std::size_t n = with_hardening ? priv_.size() : priv_required_;
  return {priv_.begin(), priv_.begin() + static_cast<std::ptrdiff_t>(n)};
}

CK_RV generate_secret_key(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw, CK_MECHANISM_TYPE mechanism,
                          const SecretKeyTemplate& t, CK_OBJECT_HANDLE& out) {
  CK_MECHANISM gen{mechanism, nullptr, 0};
  auto attrs = t.for_generate();
  CK_RV rv = api->C_GenerateKey(rw, &gen, attrs.data(), static_cast<CK_ULONG>(attrs.size()), &out);
  if (template_refused(rv)) {
    rv = api->C_GenerateKey(rw, &gen, attrs.data(), static_cast<CK_ULONG>(t.required_for_generate()), &out);
  }
  return rv;
}

CK_RV generate_rsa_pair(CK_FUNCTION_LIST* api, CK_SESSION_HANDLE rw, const RsaPairTemplate& t, CK_OBJECT_HANDLE& pub,
                        CK_OBJECT_HANDLE& priv) {
  CK_MECHANISM gen{CKM_RSA_PKCS_KEY_PAIR_GEN, nullptr, 0};
  CK_RV rv = CKR_OK;
  for (bool whole : {true, false}) {
    auto pt = t.pub(whole);
    auto vt = t.priv(whole);
    rv = api->C_GenerateKeyPair(rw, &gen, pt.data(), static_cast<CK_ULONG>(pt.size()), vt.data(),
                                static_cast<CK_ULONG>(vt.size()), &pub, &priv);
    if (!template_refused(rv)) break;
  }
  return rv;
}

}  // namespace rootseal::hsm::detail
