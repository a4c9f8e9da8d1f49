// Runs provider coroutines on an io_context with its own thread.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <thread>

#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::test {

struct Loop {
  Loop() : guard(boost::asio::make_work_guard(io)), thread([this] { io.run(); }) {}
  ~Loop() {
    guard.reset();
    io.stop();
    thread.join();
  }
  template <class T>
  T run(boost::asio::awaitable<T> task) {
    auto fut = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
    REQUIRE(fut.wait_for(std::chrono::seconds(120)) == std::future_status::ready);
    return fut.get();
  }
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard;
  std::thread thread;
};

inline std::string text(const kms::SecureBytes& b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }
inline kms::SecureBytes secure(std::string_view s) { return kms::SecureBytes::copy_of(s); }

}  // namespace rootseal::test
