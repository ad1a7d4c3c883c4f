-- wrk script: POST one legacy form body (BODY env var) to the URL given on the command line.
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  local parts = {}
  for status, count in pairs(statuses) do
    table.insert(parts, string.format("HTTP %d: %d", status, count))
  end
  io.write(string.format("statuses: %s\n", table.concat(parts, ", ")))
  io.write(string.format("requests/s: %.1f  p50: %.1f ms  p99: %.1f ms  max: %.1f ms\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
