-- bench/wrk-common.lua - what bench/deposits.lua and bench/get.lua share:
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
	math.randomseed(os.time() * 1000 + (thread_no or 0))
end

function M.pick()
	return ids[math.random(#ids)]
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
