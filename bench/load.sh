#!/usr/bin/env bash
# Load harness: rootseald with keep-alive against two baselines serving a
# fixed 200 JSON over the same transport: a minimal Beast server
# (bench/baseline_https.cpp, rootseald's own HTTP stack and TLS settings) and
# nginx (Debian's nginx-light, 2 workers, generated config, same certificate
# and TLS settings), driven by wrk. Each transport of TRANSPORTS (TLS, then
# plain HTTP on loopback) is a run of its own: servers started, all rounds,
# servers stopped.
#
#   bench/load.sh BUILD_DIR
#
# Scenarios (each CONNECTIONS connections, THREADS wrk threads, DURATION):
#   baseline      POST of the 32 B encrypt body to the baseline (fixed 200 JSON)
#   baseline-1k   POST of the 1 KiB encrypt body to the baseline (fixed 200 JSON
#                 of a 1 KiB encrypt answer's size): the reference of the 1k scenarios
#   nginx, nginx-1k  the same two requests to nginx (the same two answers)
#   datakey       POST /v1/transit/datakey/plaintext/bench (256-bit key)
#   encrypt-32    POST /v1/transit/encrypt/bench, 32 B plaintext
#   encrypt-1k    same, 1 KiB
#   decrypt-32    POST /v1/transit/decrypt/bench of a 32 B plaintext's ciphertext
#   decrypt-1k    same, 1 KiB
#   batch-1000    POST /v1/transit/encrypt/bench with batch_input of 1,000 items of 32 B
#   paced-baseline, paced-encrypt-32
#                 the same requests at a steady offered load below saturation:
#                 each connection waits a random think time (exponential, mean
#                 T ms) after each answer, so the latency is the service's,
#                 not the queue of 32 requests always outstanding; run once
#                 for each T in THINK_MS (as paced-...@T); T "half" is the think time
#                 that offers half of nginx's req/s of the same round (32 B: needs
#                 the nginx scenario; the think time is 2 x CONNECTIONS / that rate)
# All scenarios run ROUNDS times, interleaved (baseline, then each rootseald
# scenario, then again), and the run with the median req/s is reported (for
# paced scenarios: the median p99). The ratio to the baseline is taken within
# each round (a scenario against the baseline run just before it, under the
# same foreign load) and the median of those ratios is reported.
# Then the RSS run: encrypt/decrypt of 32 B in DURATION-long wrk runs until
# RSS_REQUESTS requests are done, sampling rootseald's VmRSS every RSS_INTERVAL s.
#
# Environment (defaults):
#   DURATION=10s CONNECTIONS=32 THREADS=2 ROUNDS=3 THINK_MS="2 1 half"
#   TRANSPORTS="tls plain"      one run per transport (TRANSPORT=tls|plain: that run only);
#                               the RSS run is made in the first one
#   NGINX=/usr/sbin/nginx NGINX_WORKERS=2
#   SERVER_THREADS=$(nproc)     I/O threads of both servers
#   SERVER_CPUS= CLIENT_CPUS=   taskset CPU lists for both servers / for wrk (empty: no pinning)
#   RSS_REQUESTS=1000000 RSS_INTERVAL=2   (RSS_REQUESTS=0 skips the RSS run)
#   SCENARIOS="baseline encrypt-32 ..."   a subset (baseline first)
#   RESULTS=FILE                also write the result tables (markdown) to FILE
#   KEEP=1                      keep the temporary folder (certs, config, logs)
#   AUDIT=0                     run rootseald without its audit log (diagnosis only; production audits)
#   STORAGE=etcd                rootseald's keyring on a three-member etcd started here on loopback
#                               (/usr/bin/etcd); compare the ratios of a STORAGE=sqlite run (the default)
set -euo pipefail

if [[ -z ${TRANSPORT:-} ]]; then
  read -r -a transports <<<"${TRANSPORTS:-tls plain}"
  rss=${RSS_REQUESTS:-1000000}
  for t in "${transports[@]}"; do
    echo "=== transport $t"
    TRANSPORT=$t RSS_REQUESTS=$rss RESULTS=${RESULTS:+$RESULTS.$t} bash "$0" "$@"
    rss=0
  done
  if [[ -n ${RESULTS:-} ]]; then
    for t in "${transports[@]}"; do cat "$RESULTS.$t" && echo && rm -f "$RESULTS.$t"; done >"$RESULTS"
  fi
  exit 0
fi
[[ $TRANSPORT == tls || $TRANSPORT == plain ]] || { echo "load.sh: TRANSPORT must be tls or plain" >&2; exit 1; }

BUILD=$(cd "${1:?usage: bench/load.sh BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
SERVER_THREADS=${SERVER_THREADS:-$(nproc)}
SERVER_CPUS=${SERVER_CPUS:-}
CLIENT_CPUS=${CLIENT_CPUS:-}
RSS_REQUESTS=${RSS_REQUESTS:-1000000}
RSS_INTERVAL=${RSS_INTERVAL:-2}
RESULTS=${RESULTS:-}
read -r -a THINK_MS <<<"${THINK_MS:-2 1 half}"
BATCH_ITEMS=1000
NGINX=${NGINX:-/usr/sbin/nginx}
NGINX_WORKERS=${NGINX_WORKERS:-2}

ROOTSEALD=$BUILD/daemon/rootseald
BASELINE=$BUILD/bench/rootseal_baseline_https
for exe in "$ROOTSEALD" "$BASELINE"; do
  [[ -x $exe ]] || { echo "load.sh: $exe is missing (build it first)" >&2; exit 1; }
done
[[ -x $NGINX ]] || { echo "load.sh: $NGINX is missing (scripts/install-deps installs nginx-light)" >&2; exit 1; }
for tool in wrk openssl curl softhsm2-util python3 taskset; do
  command -v "$tool" >/dev/null || { echo "load.sh: $tool is not installed (scripts/install-deps)" >&2; exit 1; }
done

DIR=$(mktemp -d /tmp/rootseal-load-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ ${KEEP:-0} == 1 ]]; then echo "load.sh: kept $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
SERVER_PIN=()
CLIENT_PIN=()
[[ -n $SERVER_CPUS ]] && SERVER_PIN=(taskset -c "$SERVER_CPUS")
[[ -n $CLIENT_CPUS ]] && CLIENT_PIN=(taskset -c "$CLIENT_CPUS")
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# utime + stime of a process (all its threads) and of its child processes (nginx's workers).
cpu_ticks() {
  local p t=0
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- throwaway CA and server certificate (P-256, like the integration tests) ---
q() { "$@" >/dev/null 2>&1 || { echo "load.sh: failed: $*" >&2; exit 1; }; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=rootseal-load-ca \
  -keyout "$DIR/ca.key" -out "$DIR/ca.pem"
echo "subjectAltName=IP:127.0.0.1" >"$DIR/server.ext"
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=rootseal-load \
  -keyout "$DIR/server.key" -out "$DIR/server.csr"
q openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial -days 2 \
  -extfile "$DIR/server.ext" -out "$DIR/server.pem"
chmod 600 "$DIR/server.key" "$DIR/ca.key"

# --- SoftHSM2 token, PIN file, token for the API ---
mkdir -p "$DIR/hsm/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$DIR/hsm/tokens" >"$DIR/hsm/softhsm2.conf"
export SOFTHSM2_CONF=$DIR/hsm/softhsm2.conf
q softhsm2-util --init-token --free --label load --so-pin 0000 --pin 1234
printf 1234 >"$DIR/pin"
chmod 600 "$DIR/pin"
TOKEN=$(openssl rand -hex 32)
TOKEN_SHA=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)

STORAGE=${STORAGE:-sqlite}
STORAGE_YAML=""
if [[ $STORAGE == etcd ]]; then
  command -v etcd >/dev/null || { echo "load.sh: etcd is not installed (scripts/install-deps)" >&2; exit 1; }
  CLUSTER=""
  declare -a ETCD_CLIENT ETCD_PEER
  for i in 0 1 2; do
    ETCD_CLIENT[i]=$(free_port)
    ETCD_PEER[i]=$(free_port)
    CLUSTER+="${CLUSTER:+,}m$i=http://127.0.0.1:${ETCD_PEER[i]}"
  done
  ENDPOINTS=""
  for i in 0 1 2; do
    etcd --name "m$i" --data-dir "$DIR/etcd-$i" --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[i]}" \
      --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[i]}" \
      --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[i]}" \
      --initial-cluster "$CLUSTER" --initial-cluster-state new >"$DIR/etcd-$i.log" 2>&1 &
    PIDS+=("$!")
    ENDPOINTS+="${ENDPOINTS:+, }\"http://127.0.0.1:${ETCD_CLIENT[i]}\""
  done
  STORAGE_YAML=$(printf 'storage: etcd\netcd:\n  endpoints: [%s]\n  prefix: /rootseal-bench/\n' "$ENDPOINTS")
fi

RS_PORT=$(free_port)
BL_PORT=$(free_port)
NG_PORT=$(free_port)
if [[ $TRANSPORT == tls ]]; then
  LISTEN_YAML=$(printf '  tls:\n    cert_file: %s\n    key_file: %s' "$DIR/server.pem" "$DIR/server.key")
else
  LISTEN_YAML="  allow_plaintext: true"
fi
cat >"$DIR/rootseald.yaml" <<EOF
listen:
  address: 127.0.0.1:$RS_PORT
$LISTEN_YAML
state_dir: $DIR/state
pkcs11:
  module: /usr/lib/softhsm/libsofthsm2.so
  token_label: load
  generate_key: true
pin:
  sources: [file]
  file: $DIR/pin
$( [[ ${AUDIT:-1} == 1 ]] && printf 'audit:\n  file: %s/audit.log\n' "$DIR" )
log:
  level: warn
io_threads: $SERVER_THREADS
$STORAGE_YAML
tokens:
  - name: load
    sha256: $TOKEN_SHA
    policies: [root]
EOF

# --- start both servers under the same conditions ---
RS_ARGS=(--config "$DIR/rootseald.yaml")
# rootseald refuses to run as root without --allow-root (a throwaway bench instance may).
if [[ $(id -u) == 0 ]] && "$ROOTSEALD" --help 2>&1 | grep -q -- --allow-root; then RS_ARGS+=(--allow-root); fi
"${SERVER_PIN[@]}" "$ROOTSEALD" "${RS_ARGS[@]}" >"$DIR/rootseald.out" 2>"$DIR/rootseald.log" &
RS_PID=$!
PIDS+=("$RS_PID")
if [[ $TRANSPORT == tls ]]; then BL_TLS=("$DIR/server.pem" "$DIR/server.key"); else BL_TLS=(- -); fi
"${SERVER_PIN[@]}" "$BASELINE" "${BL_TLS[@]}" "$BL_PORT" "$SERVER_THREADS" >"$DIR/baseline.log" 2>&1 &
BL_PID=$!
PIDS+=("$BL_PID")

# nginx: the answers of the Beast baseline (same bytes), keep-alive without a
# request limit, no access log, and for TLS rootseald's settings
# (net/src/tls.cpp): TLS 1.2/1.3, the same TLS 1.2 AEAD list with the
# server's preference, OpenSSL's default TLS 1.3 suites and groups, no
# tickets, no session cache. In the foreground (daemon off) so that its
# master is our child and is stopped with the others.
python3 - "$DIR" <<'ANSWERS'
import sys
d = sys.argv[1]
body = ('{"request_id":"00000000-0000-0000-0000-000000000000","lease_id":"","renewable":false,"lease_duration":0,'
        '"data":{"ciphertext":"vault:v1:' + 'A' * 56 + '","key_version":1},'
        '"wrap_info":null,"warnings":null,"auth":null}')
open(d + "/answer-32.json", "w").write(body)
open(d + "/answer-1k.json", "w").write(body.replace("A" * 56, "A" * 1404))
ANSWERS
NG_LISTEN="listen 127.0.0.1:$NG_PORT;"
if [[ $TRANSPORT == tls ]]; then
  NG_LISTEN="listen 127.0.0.1:$NG_PORT ssl;
    ssl_certificate $DIR/server.pem;
    ssl_certificate_key $DIR/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
    ssl_prefer_server_ciphers on;
    ssl_session_tickets off;
    ssl_session_cache off;"
fi
mkdir -p "$DIR/nginx"
cat >"$DIR/nginx.conf" <<NGINXCONF
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
$([[ $(id -u) == 0 ]] && echo "user root;")
pid $DIR/nginx.pid;
error_log $DIR/nginx.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $DIR/nginx/body;
  proxy_temp_path $DIR/nginx/proxy;
  fastcgi_temp_path $DIR/nginx/fastcgi;
  uwsgi_temp_path $DIR/nginx/uwsgi;
  scgi_temp_path $DIR/nginx/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  tcp_nodelay on;
  server_tokens off;
  server {
    $NG_LISTEN
    default_type application/json;
    location / { return 200 '$(cat "$DIR/answer-32.json")'; }
    location ~ /1k\$ { return 200 '$(cat "$DIR/answer-1k.json")'; }
  }
}
NGINXCONF
"${SERVER_PIN[@]}" "$NGINX" -p "$DIR/nginx" -e "$DIR/nginx.log" -c "$DIR/nginx.conf" >"$DIR/nginx.out" 2>&1 &
NG_PID=$!
PIDS+=("$NG_PID")

CURL=(curl -s --cacert "$DIR/ca.pem" -H "X-Vault-Token: $TOKEN" -H "Content-Type: application/json")
wait_ready() {  # name pid url
  local deadline=$((SECONDS + 60))
  until [[ $("${CURL[@]}" -o /dev/null -w '%{http_code}' "$3" 2>/dev/null) == 200 ]]; do
    kill -0 "$2" 2>/dev/null || { echo "load.sh: $1 exited" >&2; cat "$DIR"/*.log >&2; exit 1; }
    ((SECONDS < deadline)) || { echo "load.sh: $1 not ready after 60 s" >&2; cat "$DIR"/*.log >&2; exit 1; }
    sleep 0.1
  done
}
SCHEME=https
[[ $TRANSPORT == plain ]] && SCHEME=http
RS_URL=$SCHEME://127.0.0.1:$RS_PORT
BL_URL=$SCHEME://127.0.0.1:$BL_PORT
NG_URL=$SCHEME://127.0.0.1:$NG_PORT
wait_ready rootseald "$RS_PID" "$RS_URL/v1/sys/health"
wait_ready baseline "$BL_PID" "$BL_URL/"
wait_ready nginx "$NG_PID" "$NG_URL/"
for size in 32 1k; do  # nginx answers the Beast baseline's bytes
  cmp -s <("${CURL[@]}" -X POST -d '{}' "$NG_URL/v1/transit/encrypt/$size") \
    <("${CURL[@]}" -X POST -d '{}' "$BL_URL/v1/transit/encrypt/$size") \
    || { echo "load.sh: nginx and the baseline answer different bodies ($size)" >&2; exit 1; }
done
RSS_IDLE=$(rss_kib "$RS_PID")

# --- key and request bodies ---
code=$("${CURL[@]}" -o "$DIR/create.json" -w '%{http_code}' -X POST -d '{}' "$RS_URL/v1/transit/keys/bench")
[[ $code == 200 || $code == 204 ]] || { echo "load.sh: creating key 'bench' answered $code" >&2; exit 1; }
python3 - "$DIR" "$BATCH_ITEMS" <<'EOF'
import base64, json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
b64 = lambda k: base64.b64encode(os.urandom(k)).decode()
for name, size in (("encrypt-32", 32), ("encrypt-1k", 1024)):
    with open(os.path.join(d, name + ".json"), "w") as f:
        json.dump({"plaintext": b64(size)}, f)
with open(os.path.join(d, "datakey.json"), "w") as f:
    json.dump({"bits": 256}, f)
with open(os.path.join(d, "batch-1000.json"), "w") as f:
    json.dump({"batch_input": [{"plaintext": b64(32)} for _ in range(n)]}, f)
EOF
for size in 32 1k; do
  "${CURL[@]}" -X POST --data-binary "@$DIR/encrypt-$size.json" "$RS_URL/v1/transit/encrypt/bench" \
    | python3 -c 'import json,sys; print(json.dumps({"ciphertext": json.load(sys.stdin)["data"]["ciphertext"]}))' \
      >"$DIR/decrypt-$size.json"
done

# Every scenario is checked once (status 200 and the answer's shape) before it is measured.
check() {  # scenario url
  local code
  code=$("${CURL[@]}" -o "$DIR/check.json" -w '%{http_code}' -X POST --data-binary "@$(body_of "$1")" "$2")
  [[ $code == 200 ]] || { echo "load.sh: $1 answered $code: $(head -c 300 "$DIR/check.json")" >&2; exit 1; }
  python3 - "$(kind_of "$1")" "$DIR/check.json" "$BATCH_ITEMS" <<'EOF' || { echo "load.sh: $1 answered an unexpected body" >&2; exit 1; }
import json, sys
name, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = json.load(open(path))["data"]
if name.startswith("batch"):
    r = data["batch_results"]
    assert len(r) == n and all("ciphertext" in x and not x.get("error") for x in r)
elif name.startswith("encrypt"):
    assert data["ciphertext"].startswith("vault:v1:")
elif name.startswith("decrypt"):
    assert data["plaintext"]
elif name == "datakey":
    assert data["ciphertext"].startswith("vault:v1:") and data["plaintext"]
EOF
}
body_of() {
  case $(kind_of "$1") in
    baseline | nginx) echo "$DIR/encrypt-32.json" ;;
    baseline-1k | nginx-1k) echo "$DIR/encrypt-1k.json" ;;
    *) echo "$DIR/$(kind_of "$1").json" ;;
  esac
}
url_of() {
  case $(kind_of "$1") in
    baseline) echo "$BL_URL/v1/transit/encrypt/bench" ;;
    baseline-1k) echo "$BL_URL/v1/transit/encrypt/1k" ;;
    nginx) echo "$NG_URL/v1/transit/encrypt/bench" ;;
    nginx-1k) echo "$NG_URL/v1/transit/encrypt/1k" ;;
    datakey) echo "$RS_URL/v1/transit/datakey/plaintext/bench" ;;
    encrypt-* | batch-*) echo "$RS_URL/v1/transit/encrypt/bench" ;;
    decrypt-*) echo "$RS_URL/v1/transit/decrypt/bench" ;;
  esac
}
# A scenario's request kind: paced-encrypt-32@2 -> encrypt-32.
kind_of() { local k=${1#paced-}; echo "${k%@*}"; }
pid_of() {
  case $(kind_of "$1") in
    baseline*) echo "$BL_PID" ;;
    nginx*) echo "$NG_PID" ;;
    *) echo "$RS_PID" ;;
  esac
}
# The reference of a scenario's ratio: the baseline moving the same sizes.
base_of() { if [[ $1 == *-1k && " ${SCENARIOS[*]} " == *" baseline-1k "* ]]; then echo baseline-1k; else echo baseline; fi; }
# The nginx run of the same sizes, if nginx is measured.
nginx_of() {
  if [[ $1 == *-1k && " ${SCENARIOS[*]} " == *" nginx-1k "* ]]; then
    echo nginx-1k
  elif [[ " ${SCENARIOS[*]} " == *" nginx "* ]]; then
    echo nginx
  fi
}
think_of() {
  if [[ $1 != *@* ]]; then
    echo 0
  elif [[ ${1##*@} == half ]]; then  # (in the warm-up, before any nginx round: 1 ms)
    tail -n1 "$DIR/result-nginx" 2>/dev/null | awk -v c="$CONNECTIONS" '{
        for (i = 1; i <= NF; i++) if ($i ~ /^rps=/) {split($i, a, "="); r = a[2]}
        printf "%.3f", 2000 * c / r
      }' | grep . || echo 1
  else
    echo "${1##*@}"
  fi
}

# One wrk run; prints its RESULT line extended with the server's CPU time per request.
run_wrk() {  # scenario duration
  local name=$1 pid t0 t1 out line
  pid=$(pid_of "$name")
  t0=$(cpu_ticks "$pid")
  out=$(BODY_FILE=$(body_of "$name") VAULT_TOKEN=$TOKEN THINK_MS=$(think_of "$name") "${CLIENT_PIN[@]}" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$2" --latency -s "$HERE/wrk/post.lua" "$(url_of "$name")")
  t1=$(cpu_ticks "$pid")
  printf '%s\n' "$out" >>"$DIR/wrk-$name.log"
  line=$(grep '^RESULT ' <<<"$out") || { echo "load.sh: wrk printed no result for $name:" >&2; echo "$out" >&2; exit 1; }
  if [[ $(field status_errors "$line") != 0 || $(field socket_errors "$line") != 0 ]]; then
    echo "load.sh: $name had errors: $line" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "$line server_cpu_s=$(awk -v t=$((t1 - t0)) -v c="$CLK_TCK" 'BEGIN {printf "%.2f", t / c}')"
}

read -r -a REQUESTED <<<"${SCENARIOS:-baseline baseline-1k nginx nginx-1k encrypt-32 encrypt-1k decrypt-32 decrypt-1k datakey batch-1000 paced-baseline paced-encrypt-32}"
SCENARIOS=()  # paced-X becomes paced-X@T for each think time T
for s in "${REQUESTED[@]}"; do
  if [[ $s == paced-* && $s != *@* ]]; then
    for t in "${THINK_MS[@]}"; do SCENARIOS+=("$s@$t"); done
  else
    SCENARIOS+=("$s")
  fi
done
[[ ${SCENARIOS[0]} == baseline ]] || { echo "load.sh: SCENARIOS must start with baseline" >&2; exit 1; }
for s in "${SCENARIOS[@]}"; do check "$s" "$(url_of "$s")"; done

echo "transport $TRANSPORT; rootseald pid $RS_PID, baseline pid $BL_PID, nginx pid $NG_PID ($NGINX_WORKERS workers); server threads $SERVER_THREADS, CPUs ${SERVER_CPUS:-any};" \
  "wrk $THREADS threads, $CONNECTIONS connections, CPUs ${CLIENT_CPUS:-any}; $DURATION x $ROUNDS rounds"
echo "rootseald idle RSS: $(mib "$RSS_IDLE") MiB"
for s in "${SCENARIOS[@]}"; do run_wrk "$s" 2s >/dev/null; done  # warm-up
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round (load average $(loadavg))"
  for s in "${SCENARIOS[@]}"; do
    line=$(run_wrk "$s" "$DURATION")
    echo "$line" >>"$DIR/result-$s"
    printf '  %-16s %10s req/s  p50 %6s us  p99 %6s us\n' "$s" "$(field rps "$line")" \
      "$(field p50_us "$line")" "$(field p99_us "$line")"
  done
done

# The median over the rounds of req/s(scenario) / req/s(its baseline) in the same round.
median_ratio() {
  paste -d' ' "$DIR/result-$1" "$DIR/result-$2" | awk '{
      n = 0
      for (i = 1; i <= NF; i++) if ($i ~ /^rps=/) {split($i, a, "="); v[++n] = a[2]}
      print v[1] / v[2]
    }' | sort -g | awk -v m=$(((ROUNDS + 1) / 2)) 'NR == m'
}

# The round with the median req/s; for a paced scenario (whose req/s is the
# offered load) the round with the median p99.
median_of() {
  local key=rps
  [[ $1 == paced-* ]] && key=p99_us
  awk -v k="^$key=" '{for (i = 1; i <= NF; i++) if ($i ~ k) {split($i, a, "="); print a[2], $0}}' "$DIR/result-$1" \
    | sort -n -k1 | awk -v m=$(((ROUNDS + 1) / 2)) 'NR == m {sub(/^[^ ]+ /, ""); print}'
}

TABLE="| scenario | req/s | × baseline (same sizes) | × nginx (same sizes) | items/s | p50 ms | p99 ms | server CPU µs/req |
|---|---:|---:|---:|---:|---:|---:|---:|"
PACED_TABLE="| scenario@think time mean (ms) | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | server CPU µs/req |
|---|---:|---:|---:|---:|---:|---:|"
PACED=0
for s in "${SCENARIOS[@]}"; do
  line=$(median_of "$s")
  if [[ $s == paced-* ]]; then
    PACED=1
    PACED_TABLE+=$'\n'$(awk -v s="$s" -v r="$(field rps "$line")" -v p50="$(field p50_us "$line")" \
      -v p90="$(field p90_us "$line")" -v p99="$(field p99_us "$line")" -v p999="$(field p999_us "$line")" \
      -v cpu="$(field server_cpu_s "$line")" -v n="$(field requests "$line")" \
      'BEGIN {printf "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f |", s, r, p50 / 1000, p90 / 1000, p99 / 1000, p999 / 1000, cpu * 1e6 / n}')
    continue
  fi
  rps=$(field rps "$line")
  ratio=$(median_ratio "$s" "$(base_of "$s")")
  ng=$(nginx_of "$s")
  nratio=—
  [[ -n $ng ]] && nratio=$(median_ratio "$s" "$ng" | awk '{printf "%.2f", $1}')
  items=$rps
  [[ $s == batch-* ]] && items=$(awk -v r="$rps" -v n="$BATCH_ITEMS" 'BEGIN {printf "%.0f", r * n}')
  TABLE+=$'\n'$(awk -v s="$s" -v r="$rps" -v x="$ratio" -v nx="$nratio" -v i="$items" -v p50="$(field p50_us "$line")" \
    -v p99="$(field p99_us "$line")" -v cpu="$(field server_cpu_s "$line")" -v n="$(field requests "$line")" \
    'BEGIN {printf "| %s | %.0f | %.2f | %s | %.0f | %.2f | %.2f | %.0f |", s, r, x, nx, i, p50 / 1000, p99 / 1000, cpu * 1e6 / n}')
done
echo
echo "transport $TRANSPORT: median of $ROUNDS rounds, $DURATION each, $CONNECTIONS connections, storage $STORAGE:"
echo "$TABLE"
if ((PACED)); then
  echo
  echo "paced (steady offered load, $CONNECTIONS connections, think time mean ${THINK_MS[*]} ms; round with the median p99):"
  echo "$PACED_TABLE"
fi

RSS_TABLE=""
if ((RSS_REQUESTS > 0)); then
  echo
  echo "RSS run: $RSS_REQUESTS requests (encrypt/decrypt of 32 B, alternating ${DURATION} runs) ..."
  RSS_START=$(rss_kib "$RS_PID")
  (while kill -0 "$RS_PID" 2>/dev/null; do rss_kib "$RS_PID"; sleep "$RSS_INTERVAL"; done) >"$DIR/rss.samples" &
  SAMPLER=$!
  PIDS+=("$SAMPLER")
  total=0
  runs=0
  while ((total < RSS_REQUESTS)); do
    if ((runs % 2 == 0)); then s=encrypt-32; else s=decrypt-32; fi
    line=$(run_wrk "$s" "$DURATION")
    total=$((total + $(field requests "$line")))
    runs=$((runs + 1))
    echo "  $s: $(field rps "$line") req/s, total $total, RSS $(mib "$(rss_kib "$RS_PID")") MiB"
  done
  RSS_END=$(rss_kib "$RS_PID")
  kill "$SAMPLER" 2>/dev/null || true
  RSS_MAX=$(sort -n "$DIR/rss.samples" | tail -1)
  ((RSS_END > RSS_MAX)) && RSS_MAX=$RSS_END
  RSS_TABLE="| rootseald RSS | MiB |
|---|---:|
| idle, after start | $(mib "$RSS_IDLE") |
| start of the ${total}-request run (after the scenarios above) | $(mib "$RSS_START") |
| end of the run | $(mib "$RSS_END") |
| max during the run (sampled every ${RSS_INTERVAL} s) | $(mib "$RSS_MAX") |
| drift end vs start | $(awk -v a="$RSS_START" -v b="$RSS_END" 'BEGIN {printf "%+.1f %%", (b - a) * 100 / a}') |
| drift max vs start | $(awk -v a="$RSS_START" -v b="$RSS_MAX" 'BEGIN {printf "%+.1f %%", (b - a) * 100 / a}') |"
  echo
  echo "$RSS_TABLE"
fi

if [[ -n $RESULTS ]]; then
  {
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average at end $(loadavg)"
    echo "transport $TRANSPORT; storage $STORAGE; server threads $SERVER_THREADS, CPUs ${SERVER_CPUS:-any}; wrk $THREADS threads, $CONNECTIONS connections, CPUs ${CLIENT_CPUS:-any}; median of $ROUNDS rounds of $DURATION"
    echo
    echo "$TABLE"
    if ((PACED)); then printf '\n%s\n' "$PACED_TABLE"; fi
    if [[ -n $RSS_TABLE ]]; then printf '\n%s\n' "$RSS_TABLE"; fi
  } >"$RESULTS"
fi
