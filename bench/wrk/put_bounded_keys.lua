-- wrk script for bench/bench_raft.py --soak: PUT over a bounded key space (so the state stays bounded
-- while the log grows without end), each value unique. Usage: ... -- <key prefix> <number of keys>
-- Counts 2xx answers separately from every other status, so only acknowledged writes are counted,
-- and prints one JSON line (prefixed "RESULT ") that the benchmark script parses.

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] or "soak"
  keys = tonumber(args[2] or "1000")
  n = 0
  ok = 0
  redirected = 0
  unavailable = 0
  timeout = 0
  other = 0
  headers = {["Content-Type"] = "application/json"}
end

function request()
  n = n + 1
  local key = prefix .. "-" .. (n % keys)
  return wrk.format("PUT", "/kv/" .. key, headers, '{"value":"' .. tid .. "-" .. n .. '"}')
end

function response(status, hdrs, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 307 then
    redirected = redirected + 1
  elseif status == 503 then
    unavailable = unavailable + 1
  elseif status == 504 then
    timeout = timeout + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local t = {ok = 0, redirected = 0, unavailable = 0, timeout = 0, other = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(t) do
      t[name] = t[name] + (thread:get(name) or 0)
    end
  end
  io.write(string.format(
    'RESULT {"ok": %d, "status_307": %d, "status_503": %d, "status_504": %d, "status_other": %d, ' ..
    '"requests": %d, "duration_us": %d, "socket_errors": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f}\n',
    t.ok, t.redirected, t.unavailable, t.timeout, t.other, summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
