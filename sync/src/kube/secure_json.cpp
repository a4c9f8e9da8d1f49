#include "kube/secure_json.hpp"

namespace rootseal::sync::kube {

namespace json = boost::json;

kms::SecureBuffer serialize_secure(const json::value& v) {
  kms::SecureBuffer out;
  kms::serialize_into(v, out);
  return out;
}

json::value secure_json_copy(const json::value& v) {
  return json::value(v, secure_json_storage(2048));  // the arena grows geometrically past this
}

}  // namespace rootseal::sync::kube
