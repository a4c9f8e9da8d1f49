-- wrk script for bench/load.sh: POSTs one fixed JSON body on every request.
--   BODY_FILE    file holding the request body (read once per thread)
--   VAULT_TOKEN  sent as X-Vault-Token when set
-- done() prints one machine-readable RESULT line that load.sh parses.
local f = assert(io.open(assert(os.getenv("BODY_FILE"), "BODY_FILE is not set"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("VAULT_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["X-Vault-Token"] = token
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
