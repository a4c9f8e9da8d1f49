// Runs provider coroutines on an io_context with its own thread; the AWS
// provider against moto_server.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "process_util.hpp"
#include "providers/aws/aws_sm.hpp"
#include "secure_json.hpp"
#include "rootseal/kms/secure_bytes.hpp"

namespace rootseal::test {

// A provider's whole value with ESO's property and decoding applied, as the
// reconcilers do (providers return whole values; selection is in one place).
inline boost::asio::awaitable<kms::Result<kms::SecureBytes>> selected(std::shared_ptr<sync::Provider> p,
                                                                      sync::RemoteRef ref) {
  const sync::RemoteKey key{ref.key, ref.version};  // named: no temporaries in a co_await (g++ 12)
  auto whole = co_await p->fetch(key);
  if (!whole) co_return std::unexpected(whole.error());
  co_return sync::select_value(std::move(*whole), ref.property, ref.decoding, p->value_format_of(key));
}
inline boost::asio::awaitable<kms::Result<sync::SecretMap>> selected_map(std::shared_ptr<sync::Provider> p,
                                                                         sync::RemoteRef ref) {
  const sync::RemoteKey key{ref.key, ref.version};  // named: no temporaries in a co_await (g++ 12)
  if (auto refused = p->extract_refusal(key); !refused) co_return std::unexpected(refused.error());
  auto whole = co_await p->fetch(key);
  if (!whole) co_return std::unexpected(whole.error());
  co_return sync::select_map(std::move(*whole), ref.property, ref.decoding, p->value_format());
}

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

// The AWS Secrets Manager provider against a running moto_server (Moto,
// process_util.hpp), for the pull and the push tests. A namespace of its own:
// `using namespace rootseal::test::aws_moto;` where they are wanted.
namespace aws_moto {

// The region, endpoint and (dummy) credentials moto_server and Moto::aws use.
inline sync::AwsSpec moto_spec(const Moto& moto) {
  sync::AwsSpec s;
  s.region = "us-east-1";
  s.endpoint = moto.url();
  s.access_key_id = secure("testing");
  s.secret_access_key = secure("testing");
  return s;
}

inline std::shared_ptr<sync::providers::AwsSecretsManager> make(Loop& loop, sync::AwsSpec spec) {
  auto p = sync::providers::make_aws_provider(loop.io.get_executor(), std::move(spec));
  REQUIRE(p);
  return *p;
}

// The JSON an `aws ...` CLI command (an independent client) prints; it must succeed.
inline boost::json::value aws_json(const Moto& moto, const std::string& args) {
  const auto r = moto.aws(args);
  INFO(r.out);
  REQUIRE(r.status == 0);
  return boost::json::parse(r.out);
}

}  // namespace aws_moto

}  // namespace rootseal::test
