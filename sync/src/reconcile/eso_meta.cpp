#include "reconcile/eso_meta.hpp"

#include <openssl/evp.h>

#include <boost/json.hpp>

#include <charconv>

#include "rootseal/kms/encoding.hpp"
#include "secure_buffer.hpp"

namespace rootseal::sync::reconcile {

namespace json = boost::json;

std::string sha3_224_hex(std::span<const std::uint8_t> text) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), md, &len, EVP_sha3_224(), nullptr) != 1) {
    throw std::runtime_error("SHA3-224 unavailable");  // OpenSSL 3 always has it: a broken build
  }
  return kms::hex_encode(std::span<const std::uint8_t>(md, len));
}

std::string sha3_224_hex(std::string_view text) {
  return sha3_224_hex(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
}

std::string data_hash(const SecretMap& data) {
  std::size_t estimate = 8;
  for (const auto& [k, v] : data) estimate += k.size() + 4 + v.size() * 4;
  SecureBuffer text(estimate);
  text.append("map[");
  bool first = true;
  char num[4];
  for (const auto& [k, v] : data) {  // std::map order = Go's sorted string keys
    if (!first) text.push_back(' ');
    first = false;
    text.append(k);
    text.append(":[");
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i != 0) text.push_back(' ');
      auto [end, ec] = std::to_chars(num, num + sizeof num, static_cast<unsigned>(v.data()[i]));
      (void)ec;
      text.append(std::string_view(num, static_cast<std::size_t>(end - num)));
    }
    text.push_back(']');
  }
  text.push_back(']');
  kms::secure_zero(num, sizeof num);
  return sha3_224_hex(text.span());
}

std::string created_by(std::string_view ns, std::string_view name) {
  std::string s(ns);
  s.push_back('/');
  s.append(name);
  return sha3_224_hex(s);
}

namespace {
void go_map(std::string& out, const model::StringMap& m) {
  out += "map[";
  bool first = true;
  for (const auto& [k, v] : m) {
    if (!first) out.push_back(' ');
    first = false;
    out += k;
    out.push_back(':');
    out += v;
  }
  out.push_back(']');
}
}  // namespace

std::string synced_resource_version(const model::ObjectMeta& meta) {
  std::string text = "{annotations:";
  go_map(text, meta.annotations);
  text += " labels:";
  go_map(text, meta.labels);
  text.push_back('}');
  return std::to_string(meta.generation) + "-" + sha3_224_hex(text);
}

std::string field_manager(std::string_view es_name) {
  if (es_name.size() > 63) return std::string(kFieldManagerPrefix) + "sha3/" + sha3_224_hex(es_name);
  return std::string(kFieldManagerPrefix) + std::string(es_name);
}

kms::Result<SecretMap> secret_data(const json::value& secret) {
  SecretMap out;
  if (!secret.is_object()) return out;
  const auto* data = secret.as_object().if_contains("data");
  if (data == nullptr || !data->is_object()) return out;
  for (const auto& kv : data->as_object()) {
    if (kv.value().is_null()) {
      out.emplace(std::string(kv.key()), kms::SecureBytes());
      continue;
    }
    if (!kv.value().is_string()) {
      return kms::fail(kms::Errc::invalid_argument, "Secret data key '" + std::string(kv.key()) + "' is not a string");
    }
    auto v = kms::base64_decode_secure(kv.value().as_string());
    if (!v)
      return kms::fail(kms::Errc::invalid_argument, "Secret data key '" + std::string(kv.key()) + "' is not base64");
    out.emplace(std::string(kv.key()), std::move(*v));
  }
  return out;
}

}  // namespace rootseal::sync::reconcile
