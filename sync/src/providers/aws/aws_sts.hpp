// AWS STS AssumeRoleWithWebIdentity and AssumeRole (Query API, version
// 2011-06-15): the request bodies and the reading of the XML answers. The web identity token
// goes out and the credentials come back in locked memory only; error
// messages carry STS's error code, never a token or a credential.
#pragma once

#include <chrono>
#include <string_view>

#include "rootseal/kms/error.hpp"
#include "rootseal/kms/secure_bytes.hpp"
#include "rootseal/sync/provider.hpp"

namespace rootseal::sync::providers::sts {

struct Credentials {
  kms::SecureBytes access_key_id;
  kms::SecureBytes secret_access_key;
  kms::SecureBytes session_token;
  std::chrono::system_clock::time_point expiration;
};

// Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=..&RoleSessionName=..&WebIdentityToken=..
// (form-encoded; unsigned: the token is the proof).
kms::SecureBytes assume_role_with_web_identity_body(std::string_view role_arn, std::string_view session_name,
                                                    const kms::SecureBytes& web_identity_token);

// The <Credentials> of an AssumeRoleWithWebIdentityResponse: AccessKeyId,
// SecretAccessKey, SessionToken (each present, non-empty, printable ASCII)
// and Expiration (RFC 3339). unavailable otherwise.
kms::Result<Credentials> parse_assume_role_with_web_identity(std::string_view xml);

// Action=AssumeRole&Version=2011-06-15&RoleArn=..&RoleSessionName=..&DurationSeconds=..
// [&ExternalId=..][&Tags.member.N.Key=..&Tags.member.N.Value=..][&TransitiveTagKeys.member.N=..]
// (form-encoded; the caller signs it with SigV4, service "sts").
std::string assume_role_body(const AwsAssumeRole& role, std::string_view session_name, int duration_seconds);
// The <Credentials> of an AssumeRoleResponse, as above.
kms::Result<Credentials> parse_assume_role(std::string_view xml);

// "sts: HTTP 400 InvalidIdentityToken": the <Error><Code> of an error answer
// (1-64 letters and digits, else left out), never its message.
std::string error_text(int status, std::string_view xml);

}  // namespace rootseal::sync::providers::sts
