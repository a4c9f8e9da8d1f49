// rootseal::cli — `rootseal ceremony audit`: the transcript chain, entry by entry.
#include <boost/json.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "ceremony_common.hpp"
#include "rootseal/hsm/pkcs11_root.hpp"
#include "rootseal/kms/encoding.hpp"
#include "rootseal/kms/key_wrap.hpp"
#include "rootseal/kms/keyring.hpp"
#include "rootseal/kms/state_store.hpp"
#include "shamir.hpp"
#include "share_format.hpp"

namespace rootseal::cli {

using kms::Errc;
using kms::fail;

kms::Result<void> ceremony_audit(const AuditOptions& o, Console& con) {
  if (o.transcript_dir.empty()) return fail(Errc::invalid_argument, "--transcript-dir is required");
  std::error_code ec;
  if (!fs::is_directory(o.transcript_dir, ec)) {
    return fail(Errc::not_found, o.transcript_dir.string() + ": no such folder");
  }
  const Transcript t(o.transcript_dir);
  const Transcript::Audit a = t.audit();
  for (const auto& e : a.entries) {
    std::string line = e.path.filename().string() + "  " + e.str("finished_at") + "  " + e.str("kind");
    if (!e.str("ceremony_id").empty()) line += "  ceremony " + e.str("ceremony_id");
    const std::string kcv = record_kcv(e);
    if (!kcv.empty()) line += "  kcv " + kcv;
    line += "  " + e.str("outcome");
    con.out(line + "\n");
  }
  if (auto p = find_pending(a.entries)) {
    con.err("warning: root rotation " + p->ceremony_id + " is not complete (run rotate-root --resume)\n");
  }
  con.out(std::to_string(a.entries.size()) + " entries; chain head " + a.head + "\n");
  if (!a.problems.empty()) {
    std::string all;
    for (const auto& p : a.problems) all += "\n  " + p;
    return fail(Errc::conflict, "the transcript chain is broken:" + all);
  }
  if (!o.expect_head.empty() && o.expect_head != a.head) {
    return fail(Errc::conflict, "the chain head is " + a.head + ", not the recorded " + o.expect_head +
                                    ": entries were changed, removed or added since");
  }
  con.out("chain intact\n");
  return {};
}

}  // namespace rootseal::cli
