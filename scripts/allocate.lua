-- wrk script: POST /allocate with a new order id each time (<RUN>-<thread>-<n>),
-- on a random sku of SKUS skus named <PREFIX>-sku-<n>, whose batches must
-- exist (scripts/bench-postgres.sh adds them). wrk counts any answer but a
-- 2xx as "Non-2xx".
--
--   SKUS=100 PREFIX=bench RUN=run1 wrk -t2 -c16 -d10s -s scripts/allocate.lua http://127.0.0.1:5005
local skus = tonumber(os.getenv("SKUS") or "100")
local prefix = os.getenv("PREFIX") or "bench"
local run = os.getenv("RUN") or prefix
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local n = 0
function init(args)
  math.randomseed(os.time() + (tid or 0) * 7919)
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  n = n + 1
  local body = string.format('{"orderid":"%s-%d-%d","sku":"%s-sku-%d","qty":1}',
    run, tid or 0, n, prefix, math.random(0, skus - 1))
  return wrk.format(nil, "/allocate", nil, body)
end
