-- POST one encrypt per request; PLAINTEXT_B64 (base64 plaintext) comes from the environment.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Vault-Token"] = os.getenv("ROOTSEAL_TOKEN")
wrk.body = '{"plaintext":"' .. os.getenv("PLAINTEXT_B64") .. '"}'

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
