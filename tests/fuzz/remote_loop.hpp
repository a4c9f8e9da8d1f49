// Runs one coroutine of the code under test to completion on a fresh
// io_context (its own thread: this one), for the fuzz targets that drive
// the sync engine's clients against the scripted server.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <exception>
#include <optional>
#include <utility>

#include "fuzz_util.hpp"

namespace rootseal::fuzz {

template <class Make>
auto run_to_completion(boost::asio::io_context& io, Make make) {
  using Awaitable = decltype(make());
  using T = typename Awaitable::value_type;
  std::optional<T> out;
  std::exception_ptr error;
  boost::asio::co_spawn(io, make(), [&](std::exception_ptr e, T v) {
    error = e;
    if (!e) out.emplace(std::move(v));
  });
  io.run();
  io.restart();
  if (error) fail_property("an exception escaped the code under test");
  if (!out) fail_property("the coroutine did not complete");
  return std::move(*out);
}

}  // namespace rootseal::fuzz
