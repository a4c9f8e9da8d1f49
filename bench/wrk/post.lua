-- wrk script for bench/load.sh: POSTs one fixed JSON body on every request.
--   BODY_FILE    file holding the request body (read once per thread)
--   VAULT_TOKEN  sent as X-Vault-Token when set
--   THINK_MS     when set (> 0): each connection waits a random think time
--                (exponential, this mean, whole milliseconds: wrk's delay()
--                granularity) after each answer before its next request, so
--                the load is a steady offered rate below saturation instead
--                of as fast as the server answers
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

local think_ms = tonumber(os.getenv("THINK_MS") or "")
if think_ms ~= nil and think_ms > 0 then
  function init(args)
    -- Each thread its own sequence (the table's address differs per thread state).
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)
  end
  function delay()
    return math.floor(-think_ms * math.log(1 - math.random()) + 0.5)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "status_errors=%d socket_errors=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency:percentile(99.9),
    latency.max,
    e.status, e.connect + e.read + e.write + e.timeout))
end
