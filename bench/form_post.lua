-- wrk script of scripts/bench: POSTs legacy form bodies to the URL given on the command line and
-- prints one machine-readable `RESULT key=value ...` line at the end. Run it with -t1 (one Lua
-- state, so the user counter below is exact).
--
-- Environment:
--   BODY           the form body; `{user}` in it becomes a username (USER_PREFIX .. index)
--   USER_PREFIX    default "bench-user-"
--   FIRST, LAST    the range of user indexes (inclusive); without LAST, BODY is sent as is
--   MODE           "cycle" (default): FIRST..LAST round and round, one request per user in turn
--                  "once": each user at most once; when they run out, the connections go idle
--                  (an empty request) and the result says exhausted=1
--   STOP_WHEN_ANSWERED=1   with MODE=once: end the run as soon as every user got an answer
--   EXPECT_STATUS  count answers with another HTTP status as `unexpected` (the refused path)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local body = os.getenv("BODY") or ""
local prefix = os.getenv("USER_PREFIX") or "bench-user-"
local first = tonumber(os.getenv("FIRST") or "1")
local last = tonumber(os.getenv("LAST") or "0")
local once = os.getenv("MODE") == "once"
local stop_when_answered = once and os.getenv("STOP_WHEN_ANSWERED") == "1"
local expect_status = tonumber(os.getenv("EXPECT_STATUS") or "")

-- Read back by done() through thread:get (done runs in another Lua state).
issued = 0      -- users handed out so far
answered = 0    -- answers seen (only counted when a response callback is installed)
unexpected = 0  -- answers whose status was not EXPECT_STATUS
exhausted = 0
local stopped = false

local function form_for(index)
  return wrk.format(nil, nil, nil, (string.gsub(body, "{user}", prefix .. index)))
end

local verified = false
request = function()
  if last < first then
    return form_for(first)
  end
  -- wrk calls request() once before the run to check what it returns: hand out no user for it.
  if not verified then
    verified = true
    return form_for(first)
  end
  local count = last - first + 1
  if once and issued >= count then
    exhausted = 1
    return ""
  end
  local index = first + (issued % count)
  issued = issued + 1
  return form_for(index)
end

if stop_when_answered or expect_status then
  response = function(status, headers, response_body)
    answered = answered + 1
    if expect_status and status ~= expect_status then
      unexpected = unexpected + 1
    end
    if stop_when_answered and not stopped and answered >= last - first + 1 then
      stopped = true
      wrk.thread:stop()
      -- The main thread sleeps for -d; SIGINT is how wrk ends a run early, with its summary.
      local kill = io.popen("kill -INT $PPID")
      if kill then kill:close() end
    end
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
    "RESULT requests=%d status_errors=%d socket_errors=%d seconds=%.3f rps=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f issued=%d answered=%d unexpected=%d exhausted=%d\n",
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, summary.duration / 1e6,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, thread:get("issued"), thread:get("answered"),
    thread:get("unexpected"), thread:get("exhausted")))
end
