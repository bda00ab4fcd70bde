-- bench/deposits.lua - wrk: POST /accounts/{id}/deposits {"amount":100} to
-- accounts drawn at random from a list (one uuid a line).
--
--   wrk -t1 -c64 -d20s -s bench/deposits.lua http://127.0.0.1:PORT -- FILE
--
-- At the end it prints one line for bench/run to parse:
--   WRK_RESULT {"requests":..,"duration_us":..,"connect":..,"read":..,
--               "write":..,"status":..,"timeout":..,"p50_us":..,"p99_us":..}
-- where status counts answers >= 400 (wrk's own count).
local common = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") ..
	"wrk-common.lua")

local headers = { ["Content-Type"] = "application/json" }
local body = '{"amount":100}'

setup = common.setup
done = common.done

function init(args)
	common.init(args)
	common.authorize(headers)
end

function request()
	return wrk.format("POST", "/accounts/" .. common.pick() .. "/deposits",
		headers, body)
end
