-- wrk script for the Hitmap counter load benchmark (bench/load/run.py).
-- Each thread sends its own slice of a pre-generated request list: line i goes
-- to thread i % threads, in file PREFIX.TID. Lines are tab-separated:
--   H  key  client-ip  user-agent  referer            GET /c/{key}.png
--   B  key  client-ip  user-agent  origin  body      POST /b/{key} (click beacon)
-- For the last `drain` seconds (at least: the deadline is taken from os.time(),
-- whole seconds rounded down, in init, before wrk's clock starts) every thread
-- switches to filler: it repeats counter hits it has already sent (same-day
-- repeats, which cannot add a visit, yet cost the server what a counted hit
-- costs). A connection asks for its next request only after the previous
-- answer, so once the drain is longer than the slowest answer every new visit
-- has been answered when wrk stops: the harness can then compute the exact
-- number of unique visits the database must hold. Arguments: file prefix, threads, duration, drain, key of a site for the
-- last-resort filler (no Referer: never a visit) when nothing was sent yet.
-- With HITMAP_WRK_RESPONSES=1 in the environment each response is classified
-- (counter image 200 / other, beacon 204 / 503, anything else); wrk parses
-- every response for that, so throughput runs leave it off.
local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function format(line)
  local kind, key, ip, ua, ref, body =
    line:match("^(%a)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t?(.*)$")
  if kind == "B" then
    return wrk.format("POST", "/b/" .. key,
      {["X-Forwarded-For"] = ip, ["User-Agent"] = ua, ["Origin"] = ref,
       ["Content-Type"] = "text/plain;charset=UTF-8"}, body), false
  end
  return wrk.format("GET", "/c/" .. key .. ".png",
    {["X-Forwarded-For"] = ip, ["User-Agent"] = ua, ["Referer"] = ref}), true
end

function init(args)
  -- This thread's own file (PREFIX.TID), every request formatted here, before the
  -- first one is sent: formatting while the server is measured would take CPU from
  -- it on this 2-core machine. The counted window starts at the first request.
  local prefix = args[1]
  local duration, drain = tonumber(args[3]), tonumber(args[4])
  lines = {}
  reqs = {}
  is_hit = {}
  for line in io.lines(prefix .. "." .. tid) do
    lines[#lines + 1] = line
    reqs[#lines], is_hit[#lines] = format(line)
  end
  -- Last-resort filler: a real site without a Referer: answered 200, never a visit.
  filler = wrk.format("GET", "/c/" .. args[5] .. ".png", {["User-Agent"] = "Mozilla/5.0 filler"})
  deadline = os.time() + duration - drain
  sent = 0
  wrapped = 0
  fill = 0
  first_us, switch_us = 0, 0
  hit_ok, hit_bad, beacon_ok, beacon_shed, other, other_status = 0, 0, 0, 0, 0, 0
end

local function now_us()
  -- Called twice per thread (first request, switch to filler): the counted window.
  local p = io.popen("date +%s%6N")
  local t = tonumber(p:read("*l"))
  p:close()
  return t
end

local function repeat_hit()
  -- Lines 1 .. counter-1 (all of them once wrapped) have been sent; beacons are
  -- skipped (one still in flight when wrk stops would store rows unseen).
  local limit = wrapped == 1 and #lines or counter - 1
  for _ = 1, math.min(limit, 64) do
    fill = fill % limit + 1
    if is_hit[fill] then
      return reqs[fill]
    end
  end
  return filler
end

function request()
  if os.time() >= deadline then
    if switch_us == 0 then
      switch_us = now_us()
    end
    if counter == 1 and wrapped == 0 then
      return filler
    end
    return repeat_hit()
  end
  if first_us == 0 then
    first_us = now_us()
  end
  sent = sent + 1
  if counter > #lines then
    counter = 1
    wrapped = 1
  end
  local r = reqs[counter]
  counter = counter + 1
  return r
end

if os.getenv("HITMAP_WRK_RESPONSES") == "1" then
  function response(status, headers, body)
    local ctype = headers["content-type"] or headers["Content-Type"] or ""
    if status == 204 then
      beacon_ok = beacon_ok + 1
    elseif ctype:sub(1, 6) == "image/" then
      if status == 200 then hit_ok = hit_ok + 1 else hit_bad = hit_bad + 1 end
    elseif status == 503 then
      beacon_shed = beacon_shed + 1
    else
      other = other + 1
      other_status = status
    end
  end
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    parts[#parts + 1] = string.format(
      '{"tid": %d, "sent": %d, "wrapped": %d, "hit_ok": %d, "hit_bad": %d, ' ..
      '"beacon_ok": %d, "beacon_shed": %d, "other": %d, "other_status": %d, ' ..
      '"first_us": %.0f, "switch_us": %.0f}',
      t:get("tid"), t:get("sent"), t:get("wrapped"), t:get("hit_ok"), t:get("hit_bad"),
      t:get("beacon_ok"), t:get("beacon_shed"), t:get("other"), t:get("other_status"),
      t:get("first_us"), t:get("switch_us"))
  end
  io.write(string.format(
    'HITMAP_RESULT {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}, "threads": [%s]}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, table.concat(parts, ", ")))
end
