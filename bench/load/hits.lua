-- wrk script for the Hitmap counter load benchmark.
-- Each thread sends its own slice of a pre-generated request list (site key,
-- visitor IP via X-Forwarded-For, user agent, referer). Shortly before the end
-- (HITMAP_DRAIN seconds) it switches to uncounted filler requests so that every
-- counted request has been answered when wrk stops: the harness can then
-- compute the exact number of unique visits the database must hold.
local threads = {}
local counter = 1

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  local duration, drain = tonumber(args[3]), tonumber(args[4])
  reqs = {}
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == tid then
      local key, ip, ua, ref = line:match("([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)")
      reqs[#reqs + 1] = wrk.format("GET", "/c/" .. key .. ".png",
        {["X-Forwarded-For"] = ip, ["User-Agent"] = ua, ["Referer"] = ref})
    end
    i = i + 1
  end
  -- Filler: a real site without a Referer: answered 200 with the image, never a visit.
  filler = wrk.format("GET", "/c/" .. args[5] .. ".png", {["User-Agent"] = "Mozilla/5.0 filler"})
  deadline = os.time() + duration - drain
  sent = 0
  wrapped = 0
end

function request()
  if os.time() >= deadline then
    return filler
  end
  sent = sent + 1
  if counter > #reqs then
    counter = 1
    wrapped = 1
  end
  local r = reqs[counter]
  counter = counter + 1
  return r
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    parts[#parts + 1] = string.format('{"tid": %d, "sent": %d, "wrapped": %d}',
      t:get("tid"), t:get("sent"), t:get("wrapped"))
  end
  io.write(string.format(
    'HITMAP_RESULT {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}, "threads": [%s]}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, table.concat(parts, ", ")))
end
