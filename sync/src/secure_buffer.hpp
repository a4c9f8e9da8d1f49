// rootseal::sync — the growable locked buffer of kms (kms::SecureBuffer), for
// building values that carry secrets (rendered templates, JSON, the text the
// ESO data hash is computed over), under the names sync's code uses.
#pragma once

#include "rootseal/kms/secure_buffer.hpp"

namespace rootseal::sync {

using kms::as_view;
using kms::SecureBuffer;

}  // namespace rootseal::sync
