-- wrk script: cycles request bodies from $BODIES, one "path<TAB>body" a line.
-- Every request is formatted once, in `init` (after wrk has set its Host
-- header, which `wrk.format` adds), so that sending one costs wrk a table
-- lookup: what the generator spends per request is counted in the latency
-- of every request that waits behind it in wrk's single event loop.
local requests = {}
init = function(args)
  for line in io.lines(os.getenv("BODIES")) do
    local path, body = line:match("^([^\t]+)\t(.*)$")
    if path then
      requests[#requests + 1] =
        wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
    end
  end
end
local i = 0
request = function()
  i = i % #requests + 1
  return requests[i]
end

-- With DELAY_MS set, each connection waits after every response before
-- sending its next request, a whole number of milliseconds drawn uniformly
-- from 0..2*DELAY_MS (mean DELAY_MS), so that the connections do not stay in
-- step and arrive in bursts (wrk's `delay` hook; wrk starts a request's
-- latency clock when it is written, so the wait is not counted): a paced
-- load below saturation, where latency is the server's own and not the
-- queue that a closed loop at full speed builds.
local think = tonumber(os.getenv("DELAY_MS") or "")
if think then
  delay = function() return math.random(0, 2 * think) end
end
