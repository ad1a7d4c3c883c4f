-- wrk script: POST legacy form bodies to the URL given on the command line. BODY is the form;
-- when USERS is set, `{user}` in BODY cycles through bench-user-1 .. bench-user-USERS, so the load
-- spreads over many accounts as real heartbeats do.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local body = os.getenv("BODY")
local users = tonumber(os.getenv("USERS") or "0")
local counter = 0

request = function()
  counter = counter + 1
  local b = body
  if users > 0 then
    b = string.gsub(body, "{user}", "bench-user-" .. ((counter % users) + 1))
  end
  return wrk.format(nil, nil, nil, b)
end

done = function(summary, latency, requests)
  io.write(string.format("requests: %d, non-2xx: %d, socket errors: %d\n", summary.requests,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  io.write(string.format("requests/s: %.1f  p50: %.1f ms  p99: %.1f ms  max: %.1f ms\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
