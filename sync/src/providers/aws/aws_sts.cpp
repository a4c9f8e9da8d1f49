#include "providers/aws/aws_sts.hpp"

#include <optional>

#include "kube/service_account_token.hpp"
#include "secure_buffer.hpp"

namespace rootseal::sync::providers::sts {

using kms::Errc;
using kms::fail;

namespace {

void form_encode(std::string_view s, SecureBuffer& out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~') {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

// The content of the first <tag>...</tag> at or after `from` (no entity may
// appear in it: credentials and codes are plain ASCII); nullopt if none.
std::optional<std::string_view> element(std::string_view xml, std::string_view tag, std::size_t from = 0) {
  const std::string open = "<" + std::string(tag) + ">";
  const std::string close = "</" + std::string(tag) + ">";
  const auto a = xml.find(open, from);
  if (a == std::string_view::npos) return std::nullopt;
  const auto start = a + open.size();
  const auto b = xml.find(close, start);
  if (b == std::string_view::npos) return std::nullopt;
  return xml.substr(start, b - start);
}

bool printable(std::string_view s) {
  for (const char c : s) {
    if (c < 0x21 || c > 0x7e || c == '<' || c == '>' || c == '&') return false;
  }
  return true;
}

}  // namespace

kms::SecureBytes assume_role_with_web_identity_body(std::string_view role_arn, std::string_view session_name,
                                                    const kms::SecureBytes& web_identity_token) {
  SecureBuffer body(256 + web_identity_token.size());
  body.append("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=");
  form_encode(role_arn, body);
  body.append("&RoleSessionName=");
  form_encode(session_name, body);
  body.append("&WebIdentityToken=");
  form_encode(std::string_view(reinterpret_cast<const char*>(web_identity_token.data()), web_identity_token.size()),
              body);
  return body.take();
}

namespace {

// The <Credentials> under <result_tag>.
kms::Result<Credentials> parse_credentials(std::string_view xml, std::string_view result_tag) {
  const auto result = element(xml, result_tag);
  const auto creds = result ? element(*result, "Credentials") : std::nullopt;
  if (!creds) return fail(Errc::unavailable, "sts: the answer has no " + std::string(result_tag) + "/Credentials");
  Credentials out;
  const struct {
    std::string_view tag;
    kms::SecureBytes* into;
  } fields[] = {{"AccessKeyId", &out.access_key_id},
                {"SecretAccessKey", &out.secret_access_key},
                {"SessionToken", &out.session_token}};
  for (const auto& f : fields) {
    const auto v = element(*creds, f.tag);
    if (!v || v->empty() || v->size() > 8192 || !printable(*v)) {
      return fail(Errc::unavailable, "sts: Credentials/" + std::string(f.tag) + " is missing or malformed");
    }
    *f.into = kms::SecureBytes::copy_of(*v);
  }
  const auto exp = element(*creds, "Expiration");
  const auto when = exp ? kube::parse_rfc3339(*exp) : std::nullopt;
  if (!when) return fail(Errc::unavailable, "sts: Credentials/Expiration is not an RFC 3339 time");
  out.expiration = *when;
  return out;
}

}  // namespace

kms::Result<Credentials> parse_assume_role_with_web_identity(std::string_view xml) {
  return parse_credentials(xml, "AssumeRoleWithWebIdentityResult");
}

kms::Result<Credentials> parse_assume_role(std::string_view xml) { return parse_credentials(xml, "AssumeRoleResult"); }

std::string assume_role_body(const AwsAssumeRole& role, std::string_view session_name, int duration_seconds) {
  SecureBuffer body(256);
  body.append("Action=AssumeRole&Version=2011-06-15&RoleArn=");
  form_encode(role.role_arn, body);
  body.append("&RoleSessionName=");
  form_encode(session_name, body);
  body.append("&DurationSeconds=");
  body.append(std::to_string(duration_seconds));
  if (!role.external_id.empty()) {
    body.append("&ExternalId=");
    form_encode(role.external_id, body);
  }
  std::size_t n = 0;
  for (const auto& [key, value] : role.session_tags) {
    const std::string member = "&Tags.member." + std::to_string(++n);
    body.append(member + ".Key=");
    form_encode(key, body);
    body.append(member + ".Value=");
    form_encode(value, body);
  }
  n = 0;
  for (const auto& key : role.transitive_tag_keys) {
    body.append("&TransitiveTagKeys.member." + std::to_string(++n) + "=");
    form_encode(key, body);
  }
  const auto view = body.view();
  return std::string(view);
}

std::string error_text(int status, std::string_view xml) {
  std::string out = "sts: HTTP " + std::to_string(status);
  const auto err = element(xml, "Error");
  const auto code = err ? element(*err, "Code") : std::nullopt;
  if (code && !code->empty() && code->size() <= 64) {
    bool ok = true;
    for (const char c : *code) ok = ok && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
    if (ok) out += " " + std::string(*code);
  }
  return out;
}

}  // namespace rootseal::sync::providers::sts
