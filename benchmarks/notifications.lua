-- wrk script: POST Midtrans notifications round-robin from a file of JSON bodies, one per line.
-- Usage: wrk ... -s benchmarks/notifications.lua URL -- BODIES_FILE WRK_THREADS [PATH]
-- Prints one "WRK_JSON {...}" line at the end for benchmarks/webhook_load.py to read.
-- With WRK_INTERVAL_MS set, each thread sends at most one request per interval (a paced load);
-- latency then counts from when a request is sent, not from its slot (wrk's usual caveat).

local interval = tonumber(os.getenv("WRK_INTERVAL_MS") or "0")
if interval > 0 then
  -- wrk decides whether a script paces its requests by finding delay() at the top level.
  local ffi = require("ffi")
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
    int clock_gettime(int clock, wrk_timespec *now);
  ]])
  local now = ffi.new("wrk_timespec")
  local next_slot = 0

  function delay()
    ffi.C.clock_gettime(1, now) -- CLOCK_MONOTONIC
    local ms = tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
    -- The thread's connections share its slots: the next free one, never one in the past.
    local slot = math.max(next_slot, ms)
    next_slot = slot + interval
    return math.floor(slot - ms)
  end
end

local next_thread = 0

function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  local path = args[3] or "/payments/webhook"
  local headers = { ["Content-Type"] = "application/json" }
  requests = {}
  for body in io.lines(args[1]) do
    -- Formatted once here, so request() costs nothing while measuring.
    requests[#requests + 1] = wrk.format("POST", path, headers, body)
  end
  -- Thread k sends bodies k, k+T, k+2T...: together the threads walk the file in its order.
  position = thread_index
  stride = tonumber(args[2])
end

function request()
  local r = requests[(position % #requests) + 1]
  position = position + stride
  return r
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "non_2xx": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
