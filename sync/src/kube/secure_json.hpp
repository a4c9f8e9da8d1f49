// JSON documents in locked memory, for Kubernetes objects that carry secret
// values (Secrets): a boost::json storage backed by kms::SecureMonotonicResource
// (one arena per document, wiped when the last value using it goes), and a
// serializer that writes into a SecureBuffer.
#pragma once

#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>

#include <cstddef>

#include "rootseal/net/secure_body.hpp"

namespace rootseal::sync::kube {

// A fresh reference-counted arena of locked memory (first chunk `initial` bytes).
boost::json::storage_ptr secure_json_storage(std::size_t initial = 1024);
// True if `sp` is such an arena.
bool is_secure_json_storage(const boost::json::storage_ptr& sp) noexcept;
// A deep copy of `v` into its own arena sized for it.
boost::json::value secure_json_copy(const boost::json::value& v);
// Serializes into locked memory.
net::SecureBuffer serialize_secure(const boost::json::value& v);

}  // namespace rootseal::sync::kube
