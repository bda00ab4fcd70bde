-- bench/wrk-common.lua - what bench/deposits.lua, bench/get.lua and
-- bench/transfers.lua share:
-- setup and init (the account list), a random pick per request, and the
-- WRK_RESULT line.
local M = {}
local ids = {}
local nthreads = 0

-- setup(thread) runs in the main state, once per thread: number them so
-- that each thread seeds its own random sequence.
function M.setup(thread)
	nthreads = nthreads + 1
	thread:set("thread_no", nthreads)
end

-- init(args) runs in each thread: args[1] names the accounts file.
function M.init(args)
	local path = args[1]
	local f = assert(io.open(path or "", "r"),
		"usage: wrk ... -s SCRIPT URL -- ACCOUNTS_FILE")
	for line in f:lines() do
		if #line > 0 then
			ids[#ids + 1] = line
		end
	end
	f:close()
	assert(#ids > 0, "no accounts in " .. path)
	M.authorize(wrk.headers)
	math.randomseed(os.time() * 1000 + (thread_no or 0))
end

-- authorize(headers): auth is on, so every request carries bench/run's
-- token, $TANDEM_TOKEN (the nginx baseline gets it too, and ignores it).
-- wrk.format() sends either wrk.headers or a table of its own: a script
-- with its own table authorizes that one too.
function M.authorize(headers)
	local token = os.getenv("TANDEM_TOKEN")
	if token and #token > 0 then
		headers["Authorization"] = "Bearer " .. token
	end
end

function M.pick()
	return ids[math.random(#ids)]
end

function M.count()
	return #ids
end

function M.done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format('WRK_RESULT {"requests":%d,"duration_us":%d,' ..
		'"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
		'"p50_us":%d,"p99_us":%d}\n',
		summary.requests, summary.duration, e.connect, e.read, e.write,
		e.status, e.timeout, latency:percentile(50),
		latency:percentile(99)))
end

return M
