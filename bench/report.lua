-- wrk script: print one JSON line of figures at the end; with `-- unique NONCE`, every request
-- asks a prompt never asked before (so an AI cache can never hit); with `-- post BODY`, every request
-- POSTs that JSON body.
local counter = 0
local nonce = nil
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  if args[1] == "post" then
    -- `-- post BODY`: every request a POST of this JSON body (the /v1 chat completions)
    wrk.method = "POST"
    wrk.body = args[2]
    wrk.headers["Content-Type"] = "application/json"
  elseif args[1] == "unique" then
    nonce = args[2] or tostring(os.time())
    local path = args[3] or "/api/v1/ai/generate?prompt="
    request = function()
      counter = counter + 1
      return wrk.format(nil, path .. "bench-" .. nonce .. "-" .. tostring(tid) .. "-" .. counter)
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
