// TPM driver for tests/integration/test_tpm_daemon.py (swtpm only; never a
// real TPM: it extends PCRs).
//
//   tpm_tool seal <tcti> <out> <pcrs|-> [auth-file]
//       seal the secret read from stdin (1..128 bytes, as is) to <out> with
//       tpm::seal_secret_to_file, under the sha256 PCRs "7" / "0,7" / "-" (none)
//       and the auth value in auth-file (optional).
//   tpm_tool unseal-hex <tcti> <file> [auth-file]
//       print the unsealed secret in hex (tests check it never reaches a log).
//   tpm_tool extend <tcti> <pcr>
//       TPM2_PCR_Extend of the sha256 bank of <pcr>.
//   tpm_tool state <tcti>
//       print "lockout_counter N in_lockout 0|1 transient N sessions N".
// Exit status 0 on success, 2 with a message on stderr otherwise.
#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "rootseal/kms/encoding.hpp"
#include "rootseal/tpm/tpm_root.hpp"

using namespace rootseal;

namespace {

int die(const std::string& what) {
  std::fprintf(stderr, "tpm_tool: %s\n", what.c_str());
  return 2;
}

std::vector<std::uint32_t> parse_pcrs(const std::string& text) {
  std::vector<std::uint32_t> pcrs;
  if (text == "-") return pcrs;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) pcrs.push_back(static_cast<std::uint32_t>(std::stoul(item)));
  return pcrs;
}

bool load_auth(const char* path, tpm::SealPolicy& policy) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::string value((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();  // as rootseald reads it
  policy.auth_value = kms::SecureBytes::copy_of(std::string_view(value));
  return true;
}

// Raw ESAPI on a TCTI (the tpm module keeps its context private).
class Esys {
 public:
  explicit Esys(const std::string& tcti) {
    if (Tss2_TctiLdr_Initialize(tcti.c_str(), &tcti_) != TSS2_RC_SUCCESS) return;
    if (Esys_Initialize(&ctx_, tcti_, nullptr) != TSS2_RC_SUCCESS) ctx_ = nullptr;
  }
  ~Esys() {
    if (ctx_ != nullptr) Esys_Finalize(&ctx_);
    if (tcti_ != nullptr) Tss2_TctiLdr_Finalize(&tcti_);
  }
  Esys(const Esys&) = delete;
  Esys& operator=(const Esys&) = delete;
  ESYS_CONTEXT* get() const { return ctx_; }

 private:
  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* ctx_ = nullptr;
};

bool property(ESYS_CONTEXT* ctx, TPM2_PT pt, std::uint32_t& value) {
  TPMS_CAPABILITY_DATA* data = nullptr;
  TPMI_YES_NO more = TPM2_NO;
  if (Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES, pt, 1, &more, &data) !=
      TSS2_RC_SUCCESS) {
    return false;
  }
  const bool ok = data->data.tpmProperties.count == 1 && data->data.tpmProperties.tpmProperty[0].property == pt;
  if (ok) value = data->data.tpmProperties.tpmProperty[0].value;
  Esys_Free(data);
  return ok;
}

bool count_handles(ESYS_CONTEXT* ctx, TPM2_HANDLE first, std::size_t& count) {
  TPMS_CAPABILITY_DATA* data = nullptr;
  TPMI_YES_NO more = TPM2_NO;
  if (Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, first, TPM2_MAX_CAP_HANDLES,
                         &more, &data) != TSS2_RC_SUCCESS) {
    return false;
  }
  count = 0;
  for (UINT32 i = 0; i < data->data.handles.count; ++i) {
    if ((data->data.handles.handle[i] >> 24) == (first >> 24)) ++count;
  }
  Esys_Free(data);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return die("usage: tpm_tool seal|unseal-hex|extend|state <tcti> ...");
  ::setenv("TSS2_LOG", "all+none", 0);
  const std::string mode = argv[1];
  const std::string tcti = argv[2];

  if (mode == "seal" && (argc == 5 || argc == 6)) {
    tpm::SealPolicy policy;
    policy.pcrs = parse_pcrs(argv[4]);
    if (argc == 6 && !load_auth(argv[5], policy)) return die("cannot read the auth file");
    std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    auto secret = kms::SecureBytes::copy_of(std::string_view(in));
    std::fill(in.begin(), in.end(), '\0');
    if (auto r = tpm::seal_secret_to_file(tcti, policy, secret, argv[3]); !r) return die("seal: " + r.error().message);
    return 0;
  }
  if (mode == "unseal-hex" && (argc == 4 || argc == 5)) {
    tpm::SealPolicy policy;
    if (argc == 5 && !load_auth(argv[4], policy)) return die("cannot read the auth file");
    auto secret = tpm::unseal_secret_from_file(tcti, policy, argv[3]);
    if (!secret) return die("unseal: " + secret.error().message);
    std::printf("%s\n", kms::hex_encode(secret->span()).c_str());
    return 0;
  }
  if (mode == "extend" && argc == 4) {
    Esys esys(tcti);
    if (esys.get() == nullptr) return die("no TPM at " + tcti);
    const unsigned long pcr = std::stoul(argv[3]);
    if (pcr > 23) return die("PCR out of range");
    TPML_DIGEST_VALUES digests{};
    digests.count = 1;
    digests.digests[0].hashAlg = TPM2_ALG_SHA256;
    for (auto& b : digests.digests[0].digest.sha256) b = 0x42;
    const TSS2_RC rc = Esys_PCR_Extend(esys.get(), static_cast<ESYS_TR>(ESYS_TR_PCR0 + pcr), ESYS_TR_PASSWORD,
                                       ESYS_TR_NONE, ESYS_TR_NONE, &digests);
    if (rc != TSS2_RC_SUCCESS) return die("Esys_PCR_Extend failed");
    return 0;
  }
  if (mode == "state" && argc == 3) {
    Esys esys(tcti);
    if (esys.get() == nullptr) return die("no TPM at " + tcti);
    std::uint32_t counter = 0;
    std::uint32_t permanent = 0;
    std::size_t transient = 0;
    std::size_t loaded = 0;
    std::size_t active = 0;
    if (!property(esys.get(), TPM2_PT_LOCKOUT_COUNTER, counter) ||
        !property(esys.get(), TPM2_PT_PERMANENT, permanent) ||
        !count_handles(esys.get(), TPM2_TRANSIENT_FIRST, transient) ||
        !count_handles(esys.get(), TPM2_LOADED_SESSION_FIRST, loaded) ||
        !count_handles(esys.get(), TPM2_ACTIVE_SESSION_FIRST, active)) {
      return die("Esys_GetCapability failed");
    }
    std::printf("lockout_counter %u in_lockout %d transient %zu sessions %zu\n", counter,
                (permanent & TPMA_PERMANENT_INLOCKOUT) != 0 ? 1 : 0, transient, loaded + active);
    return 0;
  }
  return die("bad arguments for " + mode);
}
