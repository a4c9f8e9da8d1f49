// JSON documents in locked memory, for Kubernetes objects that carry secret
// values (Secrets): kms::secure_json_storage (one arena per document, wiped
// when the last value using it goes), and a serializer that writes into a
// SecureBuffer.
#pragma once

#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>

#include <cstddef>

#include "rootseal/kms/secure_buffer.hpp"
#include "rootseal/kms/secure_json.hpp"

namespace rootseal::sync::kube {

using kms::is_secure_json_storage;
using kms::secure_json_storage;
// A deep copy of `v` into its own arena sized for it.
boost::json::value secure_json_copy(const boost::json::value& v);
// Serializes into locked memory.
kms::SecureBuffer serialize_secure(const boost::json::value& v);

}  // namespace rootseal::sync::kube
