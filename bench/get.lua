-- bench/get.lua - wrk: GET /accounts/{id} of accounts drawn at random from
-- a list (one uuid a line). The nginx baseline answers the same paths with
-- one static file, so both sides see the same requests.
--
--   wrk -t1 -c64 -d20s -s bench/get.lua http://127.0.0.1:PORT -- FILE
--
-- Prints the WRK_RESULT line of bench/wrk-common.lua at the end.
local common = dofile((debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./") ..
	"wrk-common.lua")

setup = common.setup
init = common.init
done = common.done

function request()
	return wrk.format("GET", "/accounts/" .. common.pick())
end
