-- wrk script of scripts/soak: mixed traffic against the legacy HTTP API, a request type drawn at
-- random for each request, optionally paced. Run it with -t1. Prints one `RESULT key=value ...`
-- line at the end.
--
-- Environment:
--   SECRET        the app secret
--   USERS         warm users bench-user-1..USERS exist, password bench-user-pw, HWID HW; user 1
--                 holds a licence (downloads)
--   DEV_USER, DEV_PASSWORD   the developer (admin lists)
--   DELAY_MS      pause before each request on a connection (0: as fast as possible)
--
-- The mix, per 1,000 requests: 800 heartbeats, 150 logins, 30 wrong passwords (answered 401
-- invalid_credentials, which counts as expected), 10 admin listings (get_users), 10 downloads.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local secret = os.getenv("SECRET") or ""
local users = tonumber(os.getenv("USERS") or "1")
local dev_user = os.getenv("DEV_USER") or "bench"
local dev_password = os.getenv("DEV_PASSWORD") or "bench-pw"
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")

math.randomseed(os.time())

local function user_body(password)
  local name = "bench-user-" .. math.random(1, users)
  return "username=" .. name .. "&password=" .. password .. "&hwid=HW&app_secret=" .. secret
end

local admin_body = "developer_username=" .. dev_user .. "&develoer_password=" .. dev_password
  .. "&app_secret=" .. secret

counts = { connect = 0, login = 0, wrong = 0, list = 0, download = 0 }
unexpected = 0

request = function()
  local draw = math.random(1, 1000)
  if draw <= 800 then
    counts.connect = counts.connect + 1
    return wrk.format(nil, "/api/action.php?action=connect", nil, user_body("bench-user-pw"))
  elseif draw <= 950 then
    counts.login = counts.login + 1
    return wrk.format(nil, "/api/action.php?action=login", nil, user_body("bench-user-pw"))
  elseif draw <= 980 then
    counts.wrong = counts.wrong + 1
    return wrk.format(nil, "/api/action.php?action=login", nil, user_body("a-wrong-password"))
  elseif draw <= 990 then
    counts.list = counts.list + 1
    return wrk.format(nil, "/api/admin.php?action=get_users", nil, admin_body)
  else
    counts.download = counts.download + 1
    -- The one user holding a licence (downloads need an active one).
    local body = "username=bench-user-1&password=bench-user-pw&hwid=HW&app_secret=" .. secret
    return wrk.format(nil, "/api/action.php?action=download", nil, body)
  end
end

if delay_ms > 0 then
  delay = function()
    return delay_ms
  end
end

response = function(status, headers, body)
  if status ~= 200 and not (status == 401 and string.find(body, "invalid_credentials", 1, true)) then
    unexpected = unexpected + 1
  end
end

local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

done = function(summary, latency, requests)
  local thread = threads[1]
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d unexpected=%d socket_errors=%d seconds=%.3f rps=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, thread:get("unexpected"), e.connect + e.read + e.write + e.timeout,
    summary.duration / 1e6, summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
