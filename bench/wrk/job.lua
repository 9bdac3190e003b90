-- The async flow, one job after another on each connection (run with as many threads as
-- connections, so each thread's state is one connection's): POST /api/jobs, then wait on
-- GET /api/jobs/{id}/events until its `end` event, then GET /api/jobs/{id}/files/0.
-- wrk -s job.lua URL -- BODY_FILE AUTHORIZATION CONTENT_TYPE
dofile(os.getenv("BENCH_WRK_DIR") .. "/report.lua")

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *out);
]]
local clock = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

jobs, failures, job_seconds = 0, 0, {}
local create, authorization
local step, job_id, started = "create", nil, 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*a")
  file:close()
  authorization = args[2]
  create = wrk.format("POST", "/api/jobs",
    {["Authorization"] = authorization, ["Content-Type"] = args[3]}, body)
end

function request()
  if step == "create" then
    started = now()
    return create
  end
  local headers = {["Authorization"] = authorization}
  if step == "wait" then
    return wrk.format("GET", "/api/jobs/" .. job_id .. "/events", headers)
  end
  return wrk.format("GET", "/api/jobs/" .. job_id .. "/files/0", headers)
end

local function failed()
  failures = failures + 1
  step = "create"
end

function response(status, headers, body)
  if status ~= 200 then
    return failed()
  end
  if step == "create" then
    job_id = string.match(body, '"jobId":%s*"([^"]+)"')
    if job_id == nil then return failed() end
    step = "wait"
  elseif step == "wait" then
    if not string.find(body, 'event: end\ndata: {"jobId": "' .. job_id .. '", "status": "completed"}',
        1, true) then
      return failed()
    end
    step = "download"
  else
    jobs = jobs + 1
    table.insert(job_seconds, now() - started)
    step = "create"
  end
end
