-- wrk script: log every answer (wall-clock time, status, the X-App-Version header) to a file
-- per thread, $CAREPATH_WRK_OUT.<thread>, so a test can check which release served each request.
-- Driven by carepath.loadgen (tests/integration/test_webapp.py, bench/bluegreen).
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } carepath_timespec;
int clock_gettime(int clk_id, carepath_timespec *tp);
]]
local ts = ffi.new("carepath_timespec[1]")
local function now()
  ffi.C.clock_gettime(0, ts)  -- CLOCK_REALTIME, comparable with the test's time.time()
  return tonumber(ts[0].tv_sec) + tonumber(ts[0].tv_nsec) / 1e9
end

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

function init(args)
  out = io.open(os.getenv("CAREPATH_WRK_OUT") .. "." .. id, "w")
  out:setvbuf("line")
  -- Milliseconds each connection waits between requests: a steady load that leaves the
  -- lab's CPUs to the deploy being measured.
  pause = tonumber(os.getenv("CAREPATH_WRK_DELAY_MS") or "0")
end

function delay()
  return pause
end

function response(status, headers, body)
  local version = headers["x-app-version"] or headers["X-App-Version"] or "-"
  out:write(string.format("%.6f %d %s\n", now(), status, version))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("carepath-wrk requests=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout))
end
