// Fuzz target: the Kubernetes API client's decoding of what an API server
// sends (sync/src/kube/kube_client.cpp): list pages (with continue tokens
// and a 410 restart), watch-event streams (one JSON event per line, BOOKMARK
// and ERROR events), single objects and Status error bodies, for a plain and
// a sensitive (Secret: locked-memory JSON) resource. The real KubeClient
// and its HttpClient read the answers through their own HTTP/1.1 code from
// an in-process transport instead of a socket (scripted_transport.hpp).
//
// And a TokenRequest (call "token": POST serviceaccounts/<name>/token, the
// answer read into locked memory, then kube::parse_token_request_answer):
// a token is returned only from a 2xx answer whose status.token it is, and
// no error message quotes that token.
//
// Input: line 1 the call: list | watch | get | create | token, followed by " secret"
// for the sensitive resource; then the answers: blocks separated by a line
// "--", each "<status>\n<body>" (see parse_script), or a whole raw HTTP
// answer ("HTTP/1.1 200 OK\r\n...": header fields, chunked bodies).
// Properties beyond "no crash, no sanitizer report, no leak":
//  - a failure is an ApiError with a code in 0..999, a message, and a
//    kms::Error mapping to one of the documented codes;
//  - unless an answer is raw: agreement with a second JSON reader (boost::json on the plain heap):
//    get/create give exactly the body's value; a list that needed no
//    restart has the items of the pages it read, in order; a watch's
//    events are the "object"s of the stream's lines, in order.
#include <boost/json.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "kube/kube_client.hpp"
#include "kube/service_account_token.hpp"
#include "remote_loop.hpp"
#include "scripted_transport.hpp"

namespace json = boost::json;
namespace kube = rootseal::sync::kube;
using namespace rootseal;

namespace {

const kube::GroupVersionResource& plain_gvr() {
  static const kube::GroupVersionResource g{"external-secrets.io", "v1", "externalsecrets",
                                            "ExternalSecret",      true, false};
  return g;
}

void check_error(const kube::ApiError& e) {
  fuzz::require(e.code >= 0 && e.code < 1000, "ApiError code range");
  fuzz::require(!e.message.empty() && !e.describe().empty(), "ApiError has a message");
  fuzz::require(e.retry_after.count() >= 0 && e.retry_after.count() <= 3600, "retry_after range");
  fuzz::require_clean_error(e.to_error(),
                            {kms::Errc::not_found, kms::Errc::already_exists, kms::Errc::conflict,
                             kms::Errc::permission_denied, kms::Errc::invalid_argument, kms::Errc::unavailable},
                            "ApiError maps to a documented code");
}

std::optional<json::value> plain_parse(std::string_view s) {
  json::error_code ec;
  json::parse_options o;
  o.max_depth = 128;
  json::value v = json::parse(s, ec, {}, o);
  if (ec) return std::nullopt;
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in = fuzz::as_text(data, size);
  std::string_view call = fuzz::next_line(in);
  const bool sensitive = call.ends_with(" secret");
  if (sensitive) call.remove_suffix(7);
  const auto& gvr = sensitive ? kube::secrets_gvr() : plain_gvr();
  // One io_context for the whole run; a client per input (it holds no state
  // between calls but pooled connections). At the end of the input the
  // client, its connections and the answers it did not ask for go, and the
  // io_context runs what their destruction posted: every allocation of an
  // input is freed within it, so libFuzzer's malloc/free balance holds and
  // it does not run a full LeakSanitizer scan after each input (which made
  // this target slow down to ~300 inputs/s); a real leak still unbalances it.
  static boost::asio::io_context io;
  static fuzz::ScriptedTransport& server = fuzz::install_scripted_transport(io);
  auto script = fuzz::parse_script(in);
  const auto answers = script;
  const bool raw = fuzz::any_raw(answers);
  server.set_script(std::move(script));
  std::shared_ptr<kube::KubeClient> client = [] {
    kube::KubeConfig cfg;
    cfg.server = std::string(fuzz::kScriptedUrl);
    kube::ClientOptions options;
    options.qps = 1e9;
    options.burst = 1000000;
    options.request_timeout = std::chrono::seconds(10);
    auto made = kube::KubeClient::create(io.get_executor(), std::move(cfg), options);
    if (!made) fuzz::fail_property("client");
    return *made;
  }();
  struct Drain {
    std::shared_ptr<kube::KubeClient>& client;
    ~Drain() {
      client.reset();
      server.set_script({});
      io.restart();
      io.run();
      io.restart();
    }
  } drain{client};
  auto& c = *client;

  if (call == "get" || call == "create") {
    const json::value obj = json::object{{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", "x"}}}};
    auto r = fuzz::run_to_completion(io, [&]() -> boost::asio::awaitable<kube::KubeResult<json::value>> {
      if (call == "get") co_return co_await c.get(gvr, "default", "x");
      co_return co_await c.create(gvr, "default", obj);
    });
    if (!r) {
      check_error(r.error());
      return 0;
    }
    if (raw) return 0;
    fuzz::require(!answers.empty() && answers[0].status < 300, "success only from a 2xx answer");
    const auto plain = plain_parse(answers[0].body);
    fuzz::require(plain && *plain == *r, "the object is the body's value");
  } else if (call == "token") {
    const std::vector<std::string> aud{"vault"};
    const json::value body = kube::token_request_body(aud, 600);
    auto r = fuzz::run_to_completion(io, [&]() -> boost::asio::awaitable<kube::KubeResult<json::value>> {
      co_return co_await c.create_subresource(kube::serviceaccounts_gvr(), "default", "reader", "token", body, true);
    });
    if (!r) {
      check_error(r.error());
      return 0;
    }
    if (raw) return 0;
    fuzz::require(!answers.empty() && answers[0].status < 300, "success only from a 2xx answer");
    const auto plain = plain_parse(answers[0].body);
    auto tok = kube::parse_token_request_answer(*r);
    std::string_view want;
    if (plain && plain->is_object()) {
      const auto* st = plain->as_object().if_contains("status");
      const auto* t = st != nullptr && st->is_object() ? st->as_object().if_contains("token") : nullptr;
      if (t != nullptr && t->is_string()) want = std::string_view(t->as_string().data(), t->as_string().size());
    }
    if (tok) {
      fuzz::require(!want.empty() && tok->token.size() == want.size() &&
                        std::string_view(reinterpret_cast<const char*>(tok->token.data()), tok->token.size()) == want,
                    "the token is the answer's status.token");
    } else {
      fuzz::require_clean_error(tok.error(), {kms::Errc::unavailable}, "a refused TokenRequest answer");
      // No token in the message: the refusal of the same answer with a token
      // that differs in every character but its dots (and keeps each
      // character's class: base64url or not) is the same message. (Looking
      // for the token in the message fails on a token that is a piece of the
      // message's own text, such as "netes: st".)
      json::value twin = *r;
      json::string* token = nullptr;
      if (auto* o = twin.if_object(); o != nullptr) {
        if (auto* st = o->if_contains("status"); st != nullptr && st->is_object()) {
          if (auto* t = st->as_object().if_contains("token"); t != nullptr && t->is_string()) token = &t->as_string();
        }
      }
      if (token != nullptr && !token->empty()) {
        std::string other(token->data(), token->size());
        for (char& ch : other) {
          const bool b64 = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                           ch == '-' || ch == '_';
          if (ch != '.') ch = b64 ? (ch == 'a' ? 'b' : 'a') : (ch == '!' ? '#' : '!');
        }
        *token = other;
        const auto twin_tok = kube::parse_token_request_answer(twin);
        fuzz::require(!twin_tok && twin_tok.error().message == tok.error().message, "no token in the message");
      }
    }
  } else if (call == "list") {
    kube::ListOptions lo;
    lo.page_size = 2;
    auto r = fuzz::run_to_completion(io, [&]() -> boost::asio::awaitable<kube::KubeResult<kube::ListResult>> {
      co_return co_await c.list(gvr, "default", lo);
    });
    if (!r) {
      check_error(r.error());
      return 0;
    }
    fuzz::require(r->pages >= 1 && r->pages <= server.requests(), "pages read");
    if (!raw && r->pages == server.requests()) {  // no restart: the pages are the first answers
      json::array expected;
      for (std::size_t i = 0; i < r->pages; ++i) {
        fuzz::require(answers.size() > i && answers[i].status < 300, "pages are 2xx answers");
        const auto page = plain_parse(answers[i].body);
        fuzz::require(page && page->is_object(), "a page the client read is a JSON object");
        if (const auto* items = page->as_object().if_contains("items"); items != nullptr && items->is_array()) {
          for (const auto& it : items->as_array()) expected.push_back(it);
        }
      }
      fuzz::require(json::value(expected) == json::value(r->items), "the list's items are the pages' items");
    }
  } else if (call == "watch") {
    std::vector<kube::WatchEvent> events;
    kube::WatchOptions wo;
    wo.resource_version = "1";
    auto r = fuzz::run_to_completion(io, [&]() -> boost::asio::awaitable<kube::KubeResult<void>> {
      co_return co_await c.watch(gvr, "default", wo, [&](kube::WatchEvent&& e) {
        events.push_back(std::move(e));
        return true;
      });
    });
    if (!r) check_error(r.error());
    if (!raw && !events.empty()) {
      fuzz::require(!answers.empty() && answers[0].status < 300, "events only from a 2xx stream");
      std::string_view body = answers[0].body;
      std::size_t i = 0;
      while (!body.empty() && i < events.size()) {
        std::string_view line = fuzz::next_line(body);
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
        while (!line.empty() && (line.front() == ' ' || line.front() == '\r')) line.remove_prefix(1);
        if (line.empty()) continue;
        const auto ev = plain_parse(line);
        fuzz::require(ev && ev->is_object() && ev->as_object().contains("object"), "an event line the client took");
        fuzz::require(ev->as_object().at("object") == events[i].object, "the event's object is the line's");
        ++i;
      }
      fuzz::require(i == events.size(), "one event per line");
    }
  }
  return 0;
}
