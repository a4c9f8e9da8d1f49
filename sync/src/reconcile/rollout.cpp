#include "reconcile/rollout.hpp"

#include <boost/json.hpp>

#include <map>

#include "reconcile/eso_meta.hpp"

namespace rootseal::sync::reconcile {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

std::string_view annotation(const json::value& obj, std::string_view key) {
  if (!obj.is_object()) return {};
  const auto* md = obj.as_object().if_contains("metadata");
  if (md == nullptr || !md->is_object()) return {};
  const auto* ann = md->as_object().if_contains("annotations");
  if (ann == nullptr || !ann->is_object()) return {};
  const auto* v = ann->as_object().if_contains(key);
  return (v != nullptr && v->is_string()) ? std::string_view(v->as_string()) : std::string_view{};
}

std::string_view name_of(const json::value& obj) {
  const auto* md = obj.as_object().if_contains("metadata");
  if (md == nullptr || !md->is_object()) return {};
  const auto* n = md->as_object().if_contains("name");
  return (n != nullptr && n->is_string()) ? std::string_view(n->as_string()) : std::string_view{};
}

std::string trim(std::string_view s) {
  const auto a = s.find_first_not_of(" \t");
  if (a == std::string_view::npos) return {};
  const auto b = s.find_last_not_of(" \t");
  return std::string(s.substr(a, b - a + 1));
}

std::map<std::string, std::string> parse_record(std::string_view text) {
  std::map<std::string, std::string> out;
  for (const auto& item : split_names(text)) {
    const auto eq = item.find('=');
    if (eq == std::string::npos) continue;
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

}  // namespace

std::vector<std::string> split_names(std::string_view list) {
  std::vector<std::string> out;
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string item = trim(list.substr(0, comma));
    if (!item.empty()) out.push_back(std::move(item));
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return out;
}

RolloutReconciler::RolloutReconciler(KubeApi& api, std::function<std::chrono::system_clock::time_point()> now)
    : api_(api), now_(std::move(now)) {}

std::vector<std::pair<Resource, std::string>> RolloutReconciler::referencing(const std::string& ns,
                                                                             const std::string& secret) const {
  std::vector<std::pair<Resource, std::string>> out;
  for (const auto& [kind, obj] : api_.workloads(ns)) {
    for (const auto& s : split_names(annotation(*obj, kReloadAnnotation))) {
      if (s == secret) {
        out.emplace_back(kind, std::string(name_of(*obj)));
        break;
      }
    }
  }
  return out;
}

asio::awaitable<ReconcileResult> RolloutReconciler::reconcile(Resource kind, std::string ns, std::string name) {
  ObjectPtr workload;
  for (const auto& [k, obj] : api_.workloads(ns)) {
    if (k == kind && name_of(*obj) == name) workload = obj;
  }
  if (!workload) co_return ReconcileResult::done();
  const auto wanted = split_names(annotation(*workload, kReloadAnnotation));
  if (wanted.empty()) co_return ReconcileResult::done();
  const auto recorded = parse_record(annotation(*workload, kReloadedHashesAnnotation));

  std::map<std::string, std::string> next;
  bool changed = false;    // a recorded Secret's data differs: restart
  bool new_entry = false;  // first sight (or a Secret no longer listed): record only
  for (const auto& s : wanted) {
    auto secret = co_await api_.secret(ns, s);
    if (!secret) co_return ReconcileResult::retry();
    if (!*secret) {
      if (auto it = recorded.find(s); it != recorded.end()) next[s] = it->second;
      continue;
    }
    auto data = secret_data(**secret);
    if (!data) continue;
    const std::string h = data_hash(*data).substr(0, 16);
    next[s] = h;
    auto it = recorded.find(s);
    if (it == recorded.end()) {
      new_entry = true;
    } else if (it->second != h) {
      changed = true;
    }
  }
  if (next.size() != recorded.size()) new_entry = true;
  if (!changed && !new_entry) co_return ReconcileResult::done();

  std::string record;
  for (const auto& [s, h] : next) {
    if (!record.empty()) record += ",";
    record += s + "=" + h;
  }
  json::object patch;
  patch["metadata"] = json::object{{"annotations", json::object{{kReloadedHashesAnnotation, record}}}};
  if (changed) {
    patch["spec"] = json::object{
        {"template",
         json::object{
             {"metadata", json::object{{"annotations", json::object{{kRestartedAtAnnotation, rfc3339(now_())}}}}}}}};
  }
  const json::value body(std::move(patch));  // named (see external_secret_reconciler.cpp)
  auto r = co_await api_.patch(kind, ns, name, body);
  if (!r) co_return r.error().code == kms::Errc::not_found ? ReconcileResult::done() : ReconcileResult::retry();
  if (changed) ++restarts_;
  co_return ReconcileResult::done();
}

}  // namespace rootseal::sync::reconcile
