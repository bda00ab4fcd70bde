-- bench/transfers.lua - wrk: POST /transfers {"from":A,"to":B,"amount":10}
-- between two different accounts drawn at random from a list (one uuid a
-- line; bench/run lists accounts of one currency, each with funds for far
-- more transfers out than a run makes).
--
--   wrk -t1 -c64 -d20s -s bench/transfers.lua http://127.0.0.1:PORT -- FILE
--
-- Prints the WRK_RESULT line of bench/wrk-common.lua at the end.
local common = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") ..
	"wrk-common.lua")

local headers = { ["Content-Type"] = "application/json" }

setup = common.setup
done = common.done

function init(args)
	common.init(args)
	assert(common.count() >= 2, "a transfer needs two accounts")
	common.authorize(headers)
end

function request()
	local from, to = common.pick(), common.pick()

	while to == from do
		to = common.pick()
	end
	return wrk.format("POST", "/transfers", headers,
		'{"from":"' .. from .. '","to":"' .. to .. '","amount":10}')
end
