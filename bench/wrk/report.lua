-- Shared by the bench's wrk scripts: one JSON line on stdout when the run ends.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function percentiles(latency)
  local out = {}
  for _, p in ipairs({50, 90, 99}) do
    table.insert(out, string.format('"p%d": %.1f', p, latency:percentile(p)))
  end
  return table.concat(out, ", ")
end

function done(summary, latency, requests)
  local jobs, failures, samples = 0, 0, {}
  for _, thread in ipairs(threads) do
    jobs = jobs + (thread:get("jobs") or 0)
    failures = failures + (thread:get("failures") or 0)
    local seconds = thread:get("job_seconds") or {}
    for _, value in ipairs(seconds) do
      table.insert(samples, string.format("%.6f", value))
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK {"duration_us": %d, "requests": %d, "bytes": %d, "errors": {"connect": %d, '
      .. '"read": %d, "write": %d, "status": %d, "timeout": %d}, "latency_us": {%s}, '
      .. '"jobs": %d, "job_failures": %d, "job_seconds": [%s]}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, percentiles(latency), jobs, failures, table.concat(samples, ", ")))
end
