// rootseal::sync — ESO's own template helpers (PEM, certificate chains,
// PKCS#12, JWK, RSA-OAEP) against keys and certificates the openssl CLI makes
// at test time; PKCS#12 files rootseal writes are read back by the openssl CLI.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "process_util.hpp"
#include "rootseal/kms/encoding.hpp"
#include "template.hpp"

using namespace rootseal;
using namespace rootseal::sync;
namespace fs = std::filesystem;

namespace {

// A folder of test keys and certificates: a root CA (RSA), an intermediate
// CA (P-256) and a leaf (RSA) with subject alternative names of every kind,
// PKCS#12 files of them, ciphertexts of "the db password".
struct Pki {
  fs::path dir;
  Pki() {
    dir = fs::temp_directory_path() / ("rootseal-tmpl-eso-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string script = R"(set -e
cd ')" + dir.string() + R"('
openssl req -x509 -newkey rsa:2048 -nodes -keyout root.key -out root.crt -days 30 -subj /CN=root-ca \
  -addext basicConstraints=critical,CA:TRUE -addext subjectKeyIdentifier=hash
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout int.key -out int.csr -subj /CN=int-ca
printf 'basicConstraints=critical,CA:TRUE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > int.ext
openssl x509 -req -in int.csr -CA root.crt -CAkey root.key -CAcreateserial -out int.crt -days 30 -extfile int.ext
openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj /CN=foo.example.com
printf 'subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=DNS:foo.example.com,IP:10.0.0.1,IP:2001:db8::1,email:a@example.com,URI:spiffe://c/ns/x\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA int.crt -CAkey int.key -CAcreateserial -out leaf.crt -days 30 -extfile leaf.ext
cat root.crt int.crt > cas.crt
openssl pkcs12 -export -in leaf.crt -inkey leaf.key -certfile cas.crt -passout pass:1234 -out pass.pfx
openssl pkcs12 -export -in leaf.crt -inkey leaf.key -passout pass: -out nopass.pfx
openssl pkcs12 -export -in leaf.crt -inkey leaf.key -certfile cas.crt -passout pass:s3 \
  -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES -macalg sha1 -out legacy.pfx
openssl pkcs12 -export -in leaf.crt -inkey leaf.key -passout pass:x -iter 1000001 -out slow.pfx
openssl pkcs12 -export -in leaf.crt -inkey leaf.key -passout pass: -nomac -keypbe NONE -certpbe NONE -out plain.pfx
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout named.key -out named.crt -days 30 \
  -subj '/C=DE/O=Acme, Inc./OU=a/OU=b/CN=#ca <1> /emailAddress=x@y.z'
openssl pkey -in leaf.key -out leaf.pkcs8
openssl pkey -in leaf.key -pubout -out leaf.pub
openssl pkey -in int.key -out int.pkcs8
openssl pkey -in int.key -pubout -out int.pub
openssl genpkey -algorithm ed25519 -out ed.key
openssl pkey -in ed.key -pubout -out ed.pub
printf 'the db password' > pt
openssl pkey -in leaf.key -pubout -out leaf.pub
for h in sha1 sha256 sha512; do
  openssl pkeyutl -encrypt -pubin -inkey leaf.pub -in pt -out ct-$h -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_md:$h -pkeyopt rsa_mgf1_md:$h
done
)";
    const auto r = test::run_command("sh -c '" + escape(script) + "' 2>&1");
    INFO(r.out);
    REQUIRE(r.status == 0);
  }
  ~Pki() { fs::remove_all(dir); }
  static std::string escape(const std::string& s) {
    std::string out;
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out;
  }
  [[nodiscard]] std::string read(const std::string& name) const {
    std::ifstream f(dir / name, std::ios::binary);
    REQUIRE(f.good());
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream(dir / name, std::ios::binary) << bytes;
  }
  // The JWK (RFC 7517) of a PEM key, private or public, by Python's cryptography.
  // mode: "0" public, "1" private, "2" private without the CRT members dp, dq, qi.
  [[nodiscard]] std::string jwk(const std::string& key_file, const char* mode) const {
    const std::string py = R"(import sys, json, base64
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import rsa, ec, ed25519
k = s.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
priv = sys.argv[2] != "0"
crt = sys.argv[2] == "1"
def b(n, size=None):
    if isinstance(n, int):
        n = n.to_bytes(size or max(1, (n.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(n).rstrip(b"=").decode()
if isinstance(k, rsa.RSAPrivateKey):
    p = k.private_numbers(); q = p.public_numbers
    j = {"kty": "RSA", "n": b(q.n), "e": b(q.e)}
    if priv: j.update(d=b(p.d), p=b(p.p), q=b(p.q))
    if crt: j.update(dp=b(p.dmp1), dq=b(p.dmq1), qi=b(p.iqmp))
elif isinstance(k, ec.EllipticCurvePrivateKey):
    p = k.private_numbers(); q = p.public_numbers
    j = {"kty": "EC", "crv": "P-256", "x": b(q.x, 32), "y": b(q.y, 32)}
    if priv: j["d"] = b(p.private_value, 32)
else:
    raw = lambda o: o.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
    j = {"kty": "OKP", "crv": "Ed25519", "x": b(k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw))}
    if priv: j["d"] = b(raw(k))
print(json.dumps(j))
)";
    write("jwk.py", py);
    const auto r =
        test::run_command("python3 '" + (dir / "jwk.py").string() + "' '" + (dir / key_file).string() + "' " + mode);
    REQUIRE(r.status == 0);
    return r.out;
  }
  // `openssl pkcs12 -info` of a PKCS#12 file given as base64.
  [[nodiscard]] test::CommandResult info(const std::string& b64, const std::string& pass) const {
    const auto der = kms::base64_decode(b64);
    REQUIRE(der.has_value());
    write("out.pfx", std::string(der->begin(), der->end()));
    return test::run_command("openssl pkcs12 -info -nodes -in '" + (dir / "out.pfx").string() +
                             "' -passin pass:" + pass + " 2>&1");
  }
};

const Pki& pki() {
  static const Pki p;
  return p;
}

SecretMap data() {
  const Pki& p = pki();
  SecretMap m;
  for (const char* f :
       {"root.crt", "int.crt", "leaf.crt", "leaf.key", "int.key", "pass.pfx", "nopass.pfx", "legacy.pfx", "slow.pfx",
        "plain.pfx", "named.crt", "leaf.pkcs8", "int.pkcs8", "ct-sha1", "ct-sha256", "ct-sha512", "ed.key"}) {
    std::string k(f);
    std::replace(k.begin(), k.end(), '.', '_');
    std::replace(k.begin(), k.end(), '-', '_');
    m.emplace(k, kms::SecureBytes::copy_of(std::string_view(p.read(f))));
  }
  m.emplace("chain",
            kms::SecureBytes::copy_of(std::string_view(p.read("int.crt") + p.read("root.crt") + p.read("leaf.crt"))));
  m.emplace("bundle", kms::SecureBytes::copy_of(std::string_view("junk\n" + p.read("leaf.key") + p.read("leaf.crt") +
                                                                 p.read("int.crt") + "trailer\n")));
  m.emplace("jwk_rsa", kms::SecureBytes::copy_of(std::string_view(p.jwk("leaf.key", "1"))));
  m.emplace("jwk_rsa_nocrt", kms::SecureBytes::copy_of(std::string_view(p.jwk("leaf.key", "2"))));
  m.emplace("jwk_rsa_pub", kms::SecureBytes::copy_of(std::string_view(p.jwk("leaf.key", "0"))));
  m.emplace("jwk_ec", kms::SecureBytes::copy_of(std::string_view(p.jwk("int.key", "1"))));
  m.emplace("jwk_ec_pub", kms::SecureBytes::copy_of(std::string_view(p.jwk("int.key", "0"))));
  m.emplace("jwk_ed", kms::SecureBytes::copy_of(std::string_view(p.jwk("ed.key", "1"))));
  m.emplace("jwk_ed_pub", kms::SecureBytes::copy_of(std::string_view(p.jwk("ed.key", "0"))));
  return m;
}

std::string render(std::string_view t) {
  static const SecretMap d = data();
  auto r = render_template(t, d);
  if (!r) FAIL(r.error().message);
  return std::string(reinterpret_cast<const char*>(r->data()), r->size());
}
std::string error(std::string_view t) {
  static const SecretMap d = data();
  auto r = render_template(t, d);
  REQUIRE_FALSE(r.has_value());
  return r.error().message;
}

}  // namespace

TEST_CASE("filterPEM keeps the blocks of one type as Go's encoding/pem writes them") {
  const Pki& p = pki();
  CHECK(render("{{ .bundle | filterPEM \"CERTIFICATE\" }}") == p.read("leaf.crt") + p.read("int.crt"));
  CHECK(render("{{ .bundle | filterPEM \"private key\" }}") == p.read("leaf.key"));
  CHECK(render("[{{ .root_crt | filterPEM \"PRIVATE KEY\" }}]") == "[]");
  CHECK(error("{{ .ct_sha1 | filterPEM \"CERTIFICATE\" }}").find("error filtering pem: found junk") !=
        std::string::npos);
}

TEST_CASE("filterCertChain orders a chain by key identifiers") {
  const Pki& p = pki();
  CHECK(render("{{ .chain | filterCertChain \"leaf\" }}") == p.read("leaf.crt"));
  CHECK(render("{{ .chain | filterCertChain \"intermediate\" }}") == p.read("int.crt"));
  CHECK(render("{{ .chain | filterCertChain \"root\" }}") == p.read("root.crt"));
  CHECK(render("[{{ .root_crt | filterCertChain \"leaf\" }}]") == "[]");
  CHECK(error("{{ .bundle | filterCertChain \"leaf\" }}").find("filterCertChain") != std::string::npos);
}

TEST_CASE("certSANs lists DNS names then addresses then e-mails then URIs") {
  CHECK(render("{{ .chain | filterCertChain \"leaf\" | certSANs | toJson }}") ==
        R"(["foo.example.com","10.0.0.1","2001:db8::1","a@example.com","spiffe://c/ns/x"])");
  CHECK(render("{{ .root_crt | certSANs | len }}") == "0");
  CHECK(error("{{ .ct_sha1 | certSANs }}").find("failed to decode PEM block") != std::string::npos);
}

TEST_CASE("pkcs12key and pkcs12cert read openssl's PKCS12 files") {
  const Pki& p = pki();
  const std::string ordered = p.read("leaf.crt") + p.read("int.crt") + p.read("root.crt");
  CHECK(render("{{ .pass_pfx | pkcs12keyPass \"1234\" }}") == p.read("leaf.pkcs8"));
  CHECK(render("{{ .pass_pfx | pkcs12certPass \"1234\" }}") == ordered);
  CHECK(render("{{ .legacy_pfx | pkcs12keyPass \"s3\" }}") == p.read("leaf.pkcs8"));
  CHECK(render("{{ .legacy_pfx | pkcs12certPass \"s3\" }}") == ordered);
  CHECK(render("{{ .nopass_pfx | pkcs12key }}") == p.read("leaf.pkcs8"));
  CHECK(render("{{ .nopass_pfx | pkcs12cert }}") == p.read("leaf.crt"));
  const std::string wrong = error("{{ .pass_pfx | pkcs12keyPass \"nope-pw\" }}");
  CHECK(wrong.find("unable to decode pkcs12 with password") != std::string::npos);
  CHECK(wrong.find("nope-pw") == std::string::npos);
  CHECK(error("{{ .pass_pfx | pkcs12cert }}").find("unable to decode pkcs12 certificate with password") !=
        std::string::npos);
  CHECK(error("{{ .leaf_crt | pkcs12key }}").find("pkcs12") != std::string::npos);
  // No MAC and no encryption (a plain key bag): read with no password only, as go-pkcs12.
  CHECK(render("{{ .plain_pfx | pkcs12key }}") == p.read("leaf.pkcs8"));
  CHECK(error("{{ .plain_pfx | pkcs12keyPass \"pw\" }}").find("pkcs12: no MAC in data") != std::string::npos);
  // The iteration counts are the file's: capped.
  CHECK(error("{{ .slow_pfx | pkcs12keyPass \"x\" }}").find("more than 1000000 iterations are not supported") !=
        std::string::npos);
}

TEST_CASE("pemToPkcs12 writes files the openssl CLI reads back") {
  const Pki& p = pki();
  const std::string b64 = render("{{ pemToPkcs12Pass .leaf_crt .leaf_key \"pw9\" }}");
  const auto info = p.info(b64, "pw9");
  INFO(info.out);
  REQUIRE(info.status == 0);
  CHECK(info.out.find("MAC: sha256, Iteration 2048") != std::string::npos);
  CHECK(info.out.find("PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256") != std::string::npos);
  CHECK(info.out.find("subject=CN = foo.example.com") != std::string::npos);
  CHECK(info.out.find("subject=CN = int-ca") == std::string::npos);
  CHECK(p.info(b64, "other").status != 0);
  // And back through rootseal's own reader: the same key and certificate.
  CHECK(render("{{ pemToPkcs12Pass .leaf_crt .leaf_key \"pw9\" | b64dec | pkcs12keyPass \"pw9\" }}") ==
        p.read("leaf.pkcs8"));
  // As go-pkcs12, the key is not checked against the certificate.
  CHECK(render("{{ pemToPkcs12 .leaf_crt .int_key | b64dec | pkcs12key }}") == p.read("int.pkcs8"));
  // fullPemToPkcs12: the CA certificates after the first go in too.
  const std::string full = render("{{ fullPemToPkcs12 (print .leaf_crt .int_crt .root_crt) .leaf_key }}");
  const auto full_info = p.info(full, "");
  INFO(full_info.out);
  REQUIRE(full_info.status == 0);
  CHECK(full_info.out.find("subject=CN = int-ca") != std::string::npos);
  CHECK(full_info.out.find("subject=CN = root-ca") != std::string::npos);
  CHECK(render("{{ fullPemToPkcs12 (print .leaf_crt .int_crt .root_crt) .leaf_key | b64dec | pkcs12cert }}") ==
        p.read("leaf.crt") + p.read("int.crt") + p.read("root.crt"));
  CHECK(error("{{ pemToPkcs12 .ct_sha1 .leaf_key }}").find("pemToPkcs12") != std::string::npos);
  CHECK(error("{{ pemToPkcs12 .leaf_crt .root_crt }}").find("unable to parse private key type") != std::string::npos);
}

TEST_CASE("pemTruststoreToPKCS12 writes a Java trust store the openssl CLI reads back") {
  const Pki& p = pki();
  const std::string b64 = render("{{ pemTruststoreToPKCS12Pass (print .root_crt .int_crt .named_crt) \"pw7\" }}");
  const auto info = p.info(b64, "pw7");
  INFO(info.out);
  REQUIRE(info.status == 0);
  CHECK(info.out.find("MAC: sha256, Iteration 2048") != std::string::npos);
  CHECK(info.out.find("PBES2, PBKDF2, AES-256-CBC, Iteration 2048, PRF hmacWithSHA256") != std::string::npos);
  // Each certificate with the Java trusted key usage attribute and its
  // subject as Go's pkix.Name.String() writes it (checked against Go 1.19's
  // crypto/x509: the e-mail address, a type Go does not name, last as the
  // hex of a UTF8String; OU values as one RDN; RFC 2253 escapes).
  CHECK(info.out.find("friendlyName: CN=root-ca") != std::string::npos);
  CHECK(info.out.find("friendlyName: CN=int-ca") != std::string::npos);
  CHECK(info.out.find(
            "friendlyName: CN=\\#ca \\<1\\>\\ ,OU=a+OU=b,O=Acme\\, Inc.,C=DE,1.2.840.113549.1.9.1=#0c057840792e7a") !=
        std::string::npos);
  std::size_t java = 0;
  for (std::size_t at = 0; (at = info.out.find("2.16.840.1.113894.746875.1.1: ", at)) != std::string::npos; ++at)
    ++java;
  CHECK(java == 3);
  CHECK(info.out.find("Key Attributes") == std::string::npos);
  CHECK(p.info(b64, "other").status != 0);
  // ESO's pkcs12cert (go-pkcs12's DecodeChain) wants a key: a trust store has none.
  CHECK(error("{{ pemTruststoreToPKCS12 .root_crt | b64dec | pkcs12cert }}").find("private key missing") !=
        std::string::npos);
  const auto none = p.info(render("{{ pemTruststoreToPKCS12 \"\" }}"), "");
  INFO(none.out);
  CHECK(none.status == 0);
  // As in ESO: text after the last block that is no block fails (Go
  // dereferences the missing block), and so does a block that is no certificate.
  CHECK(error("{{ pemTruststoreToPKCS12 (print .root_crt \"\\n\") }}").find("nil pointer dereference") !=
        std::string::npos);
  CHECK(error("{{ pemTruststoreToPKCS12 .leaf_key }}").find("pemTruststoreToPKCS12") != std::string::npos);
}

TEST_CASE("jwkPublicKeyPem and jwkPrivateKeyPem give openssl's PKIX and PKCS8 PEMs") {
  const Pki& p = pki();
  CHECK(render("{{ .jwk_rsa | jwkPrivateKeyPem }}") == p.read("leaf.pkcs8"));
  CHECK(render("{{ .jwk_rsa_pub | jwkPublicKeyPem }}") == p.read("leaf.pub"));
  // Without dp, dq, qi: computed, as Go's rsa.PrivateKey.Precompute does.
  CHECK(render("{{ .jwk_rsa_nocrt | jwkPrivateKeyPem }}") == p.read("leaf.pkcs8"));
  CHECK(render("{{ .jwk_ec | jwkPrivateKeyPem }}") == p.read("int.pkcs8"));
  CHECK(render("{{ .jwk_ec_pub | jwkPublicKeyPem }}") == p.read("int.pub"));
  CHECK(render("{{ .jwk_ed | jwkPrivateKeyPem }}") == p.read("ed.key"));
  CHECK(render("{{ .jwk_ed_pub | jwkPublicKeyPem }}") == p.read("ed.pub"));
  // Go's x509 marshals a private key only as PKCS8 and a public one only as PKIX.
  CHECK(error("{{ .jwk_rsa | jwkPublicKeyPem }}").find("jwkPublicKeyPem") != std::string::npos);
  CHECK(error("{{ .jwk_rsa_pub | jwkPrivateKeyPem }}").find("jwkPrivateKeyPem") != std::string::npos);
  CHECK(error("{{ `{\"kty\":\"oct\",\"k\":\"AAAA\"}` | jwkPublicKeyPem }}").find("symmetric") != std::string::npos);
  CHECK(error("{{ \"[]\" | jwkPublicKeyPem }}").find("not a JSON object") != std::string::npos);
}

TEST_CASE("rsaDecrypt decrypts RSA-OAEP with the hash named") {
  CHECK(render("{{ rsaDecrypt \"RSA-OAEP\" \"SHA1\" .ct_sha1 .leaf_key }}") == "the db password");
  CHECK(render("{{ rsaDecrypt \"RSA-OAEP\" \"SHA256\" .ct_sha256 .leaf_key }}") == "the db password");
  CHECK(render("{{ rsaDecrypt \"RSA-OAEP\" \"None\" .ct_sha256 .leaf_key }}") == "the db password");
  CHECK(render("{{ rsaDecrypt \"RSA-OAEP\" \"SHA512\" .ct_sha512 .leaf_key }}") == "the db password");
  CHECK(render("{{ rsaDecrypt \"None\" \"SHA1\" \"as is\" .leaf_key }}") == "as is");
  CHECK(error("{{ rsaDecrypt \"RSA-OAEP\" \"SHA1\" .ct_sha256 .leaf_key }}").find("error decrypting data with RSA") !=
        std::string::npos);
  CHECK(error("{{ rsaDecrypt \"RSA-OAEP\" \"SHA1\" .ct_sha1 .int_key }}").find("could not parse RSA private key") !=
        std::string::npos);
  CHECK(error("{{ rsaDecrypt \"PKCS1\" \"SHA1\" .ct_sha1 .leaf_key }}").find("is not supported") != std::string::npos);
}

TEST_CASE("htpasswd as ESO's Sprig: sha or bcrypt") {
  const Pki& p = pki();
  p.write("pw", "s3cr3t");
  const auto sha = test::run_command("openssl dgst -sha1 -binary '" + (p.dir / "pw").string() + "' | base64");
  REQUIRE(sha.status == 0);
  CHECK(render("{{ htpasswd \"alice\" \"s3cr3t\" \"sha\" }}") == "alice:{SHA}" + sha.out.substr(0, sha.out.find('\n')));
  CHECK(render("{{ htpasswd \"a:b\" \"s3cr3t\" \"sha\" }}") == "invalid username: a:b");
  // bcrypt as Go's (2a, cost 10), random salt: checked with crypt(3) through Python.
  const std::string line = render("{{ htpasswd \"alice\" \"s3cr3t\" \"bcrypt\" }}");
  REQUIRE(line.starts_with("alice:$2a$10$"));
  CHECK(line.size() == 6 + 60);
  CHECK(line != render("{{ htpasswd \"alice\" \"s3cr3t\" \"bcrypt\" }}"));
  p.write("hash", line.substr(6));
  const auto ok = test::run_command(
      "python3 -W ignore -c 'import crypt,sys; h=open(sys.argv[1]).read(); "
      "print(crypt.crypt(\"s3cr3t\", h) == h, crypt.crypt(\"other\", h) == h)' '" +
      (p.dir / "hash").string() + "'");
  CHECK(ok.out == "True False\n");
  CHECK(render("{{ htpasswd \"u\" (repeat 73 \"x\") \"bcrypt\" }}") ==
        "u:failed to encrypt string with bcrypt: bcrypt: password length exceeds 72 bytes");
}

TEST_CASE("fromYaml reads YAML 1.1 as sigs.k8s.io/yaml into a map of JSON values") {
  // go-yaml v2's resolution of plain scalars, numbers float64 after encoding/json.
  CHECK(
      render("{{ toJson (fromYaml \"a: 1\\nb: yes\\nc: 0x1F\\nd: ~\\ne: 2006-01-02\\nf: '1'\\ng: 1.50\\nh: 017\\n"
             "i: 1_000\\nj: Off\\nk: 1:20\\nl: <<\") }}") ==
      R"({"a":1,"b":true,"c":31,"d":null,"e":"2006-01-02","f":"1","g":1.5,"h":15,"i":1000,"j":false,"k":"1:20","l":"\u003c\u003c"})");
  CHECK(render("{{ (fromYaml \"num: 1234567\").num }}") == "1.234567e+06");
  CHECK(render("{{ (fromYaml \"num: 12345678901234567890\").num }}") == "1.2345678901234567e+19");
  CHECK(render("{{ fromYaml \"n: 1\\ny: 2\" }}") == "map[false:1 true:2]");  // YAML 1.1: n and y are booleans
  // Nested block and flow collections, block scalars.
  CHECK(render("{{ $m := fromYaml \"db:\\n  host: h\\n  opts: {ssl: on, ns: [1, x]}\\nl:\\n- a\\n- |\\n  two\\n  "
               "lines\\n\" }}"
               "{{ $m.db.host }} {{ $m.db.opts }} {{ index $m.l 1 | quote }}") ==
        "h map[ns:[1 x] ssl:true] \"two\\nlines\\n\"");
  // Anchors, aliases and merge keys (go-yaml v2: merged in order, a later key wins).
  CHECK(
      render("{{ toJson (fromYaml \"base: &b {u: x, p: 1}\\nprod:\\n  <<: *b\\n  p: 2\\nlate:\\n  p: 3\\n  <<: *b\\n"
             "both:\\n  <<: [{p: 4}, *b]\\ncopy: *b\") }}") ==
      R"({"base":{"p":1,"u":"x"},"both":{"p":4,"u":"x"},"copy":{"p":1,"u":"x"},"late":{"p":1,"u":"x"},"prod":{"p":2,"u":"x"}})");
  // Keys as sigs.k8s.io/yaml makes them strings.
  CHECK(render("{{ toJson (fromYaml \"1: a\\ntrue: b\\n0x10: c\\n'x': d\") }}") ==
        R"({"1":"a","16":"c","true":"b","x":"d"})");
  // Only the first document.
  CHECK(render("{{ toJson (fromYaml \"a: b\\n---\\n[\") }}") == R"({"a":"b"})");
  // A round trip of toYaml.
  CHECK(render("{{ toJson (fromYaml (toYaml (dict \"k\" \"yes\" \"l\" (list \"0x1F\" 2 nil) \"m\" \"a\\nb\"))) }}") ==
        R"({"k":"yes","l":["0x1F",2,null],"m":"a\nb"})");
}

TEST_CASE("fromYaml puts the JSON steps' errors in Error as ESO does") {
  CHECK(render("{{ fromYaml \"\" }}|{{ fromYaml \"~\" }}") == "map[]|map[]");
  CHECK(render("{{ fromYaml \"- a\" }}") ==
        "map[Error:error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type "
        "map[string]interface {}]");
  CHECK(render("{{ (fromYaml \"text\").Error }}") ==
        "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal string into Go value of type "
        "map[string]interface {}");
  CHECK(render("{{ (fromYaml \"a: [1, .nan]\\nb: -.inf\").Error }}") ==
        "error converting YAML to JSON: json: unsupported value: NaN");
  CHECK(render("{{ (fromYaml \"a: 1\\nb: -.inf\").Error }}") ==
        "error converting YAML to JSON: json: unsupported value: -Inf");
  // go-yaml's parse errors: its problem texts and line numbers, no part of the text.
  CHECK(render("{{ fromYaml \"a: 's3cr3t\" }}") ==
        "map[Error:error converting YAML to JSON: yaml: found unexpected end of stream]");
  CHECK(render("{{ (fromYaml \"a: s3cr3t\\nc\").Error }}") ==
        "error converting YAML to JSON: yaml: line 3: could not find expected ':'");
  CHECK(render("{{ (fromYaml \"'a\\n b': s3cr3t\").Error }}") ==
        "error converting YAML to JSON: yaml: line 2: mapping values are not allowed in this context");
  CHECK(render("{{ (fromYaml \"a: s3cr3t\\n<<: [{b: 1}, s3cr3t]\").Error }}") ==
        "error converting YAML to JSON: yaml: map merge requires map or sequence of maps as the value");
  CHECK(render("{{ (fromYaml \"a: s3cr3t: c\").Error }}") ==
        "error converting YAML to JSON: yaml: mapping values are not allowed in this context");
}

TEST_CASE("fromYaml refuses what it does not read as go-yaml does and quotes no value") {
  for (const std::string_view doc :
       {"a: !!str s3cr3t", "~: s3cr3t", "a: *s3cr3t", "x: &a [*a, s3cr3t]", "1: s3cr3t\\n'1': b", "? [s3cr3t]\\n: b",
        "%YAML 1.1\\n---\\na: s3cr3t", "1.5: s3cr3t", "18446744073709551615: s3cr3t"}) {
    const std::string e = error("{{ fromYaml \"" + std::string(doc) + "\" }}");
    CHECK(e.find("fromYaml: refused") != std::string::npos);
    CHECK(e.find("s3cr3t") == std::string::npos);
  }
  // Not UTF-8 ("a: \xff"): go-yaml's reader refuses it, with a text rootseal does not write.
  CHECK(error("{{ fromYaml (b64dec \"YTog/w==\") }}").find("fromYaml: refused") != std::string::npos);
}
