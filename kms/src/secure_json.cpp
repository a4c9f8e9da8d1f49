#include "rootseal/kms/secure_json.hpp"

#include <boost/json/parser.hpp>
#include <boost/json/serializer.hpp>

#include <array>

namespace rootseal::kms {

namespace json = boost::json;

json::storage_ptr secure_json_storage(std::size_t initial, std::size_t limit) {
  return json::make_shared_resource<SecureJsonResource>(initial, limit);
}

bool is_secure_json_storage(const json::storage_ptr& sp) noexcept {
  // make_shared_resource<T> wraps T in detail::shared_resource_impl<T>.
  return dynamic_cast<const json::detail::shared_resource_impl<SecureJsonResource>*>(sp.get()) != nullptr ||
         dynamic_cast<const SecureJsonResource*>(sp.get()) != nullptr;
}

json::value parse_into(std::string_view text, const json::storage_ptr& sp, boost::system::error_code& ec,
                       const json::parse_options& options) {
  json::parser p(sp, options);  // temporaries in sp
  p.reset(sp);                  // and the result
  p.write(text.data(), text.size(), ec);
  if (ec) return json::value(sp);
  return p.release();
}

namespace {

template <class T>
void serialize_any(const T& value, SecureBuffer& out) {
  json::serializer sr;
  sr.reset(&value);
  std::array<char, 4096> chunk;  // on the stack; wiped below
  while (!sr.done()) out.append(sr.read(chunk.data(), chunk.size()));
  secure_zero(chunk.data(), chunk.size());
}

}  // namespace

void serialize_into(const json::value& value, SecureBuffer& out) { serialize_any(value, out); }
void serialize_into(const json::object& object, SecureBuffer& out) { serialize_any(object, out); }

}  // namespace rootseal::kms
