-- POST an encrypt batch of BATCH_ITEMS items (32 bytes each) per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Vault-Token"] = os.getenv("ROOTSEAL_TOKEN")
local n = tonumber(os.getenv("BATCH_ITEMS") or "1000")
local item = '{"plaintext":"YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE="}'
local items = {}
for i = 1, n do items[i] = item end
wrk.body = '{"batch_input":[' .. table.concat(items, ",") .. ']}'

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f items_per_s=%.0f\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, n * summary.requests / (summary.duration / 1e6)))
end
