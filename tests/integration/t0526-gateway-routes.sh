#!/usr/bin/env bash
# t0526-gateway-routes.sh - the gateway routes what the services serve, and
# nothing else (deploy/gateway/routes.conf, whose route table
# `scripts/gateway routes` makes from the binaries' --routes):
#
# 1. The committed file is what the binaries in $TANDEM_BIN make (after a
#    route changes, `make gateway-routes` writes it anew). Stand-in
#    binaries with a route less or a made-up one make a different file;
#    the generator refuses two patterns one path could match, and a
#    method both sides serve that it cannot give to one of them.
# 2. Through the gateway, each route of either side (HEAD with each GET)
#    reaches that side's handler: its log has the request, by its
#    X-Request-Id, under that route. GET /health, /ready and /metrics,
#    which both serve, go to the query side.
# 3. Every other method on the path of each route, the audit's four
#    (GET /transfers, POST /accounts/{id}, POST /status,
#    GET /accounts/{id}/deposits) among them, is 405 from the gateway:
#    problem+json with the type and title of the services' own 405, and
#    Allow the union of what the two services send for that path, both
#    asked on their own ports. A path neither side has is 404
#    problem+json with the services' type and title, whatever the method.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

GEN=$TANDEM_ROOT/scripts/gateway
CONF=$TANDEM_ROOT/deploy/gateway/routes.conf
ID=0b5e1d7a-6c4f-4e2b-9a8d-3f1c2b4a5e6d

# ---- 1. the committed route table is the binaries' ----

say "routes.conf is what scripts/gateway routes makes from the binaries"
"$GEN" routes "$TANDEM_BIN" >"$TEST_TMP/routes.conf" ||
	fail "scripts/gateway routes failed"
diff -u "$CONF" "$TEST_TMP/routes.conf" >"$TEST_TMP/routes.diff" ||
	fail "deploy/gateway/routes.conf differs from what the binaries" \
		"make (run make gateway-routes): $(head -n 30 "$TEST_TMP/routes.diff")"
n=$(grep -c 'tandem_\(command\|query\); #' "$CONF") || true
want=$(cat <("$TANDEM_BIN/command-service" --routes) \
	<("$TANDEM_BIN/query-service" --routes) | awk '{print $2}' | sort -u |
	wc -l)
# one line per (pattern, side); only /health, /ready and /metrics are on
# both sides, each once (the query side's)
expect_eq "$n" "$want" "route lines of the table (one per path)"

# fake DIR COMMAND_ROUTES QUERY_ROUTES: stand-in binaries in DIR that
# print those routes for --routes
fake()
{
	mkdir -p "$1"
	printf '#!/bin/sh\nprintf "%%s\\n" "%s"\n' "$2" >"$1/command-service"
	printf '#!/bin/sh\nprintf "%%s\\n" "%s"\n' "$3" >"$1/query-service"
	chmod +x "$1/command-service" "$1/query-service"
}
cmd_routes=$("$TANDEM_BIN/command-service" --routes)
qry_routes=$("$TANDEM_BIN/query-service" --routes)

say "a route less or a made-up one: the file differs"
fake "$TEST_TMP/less" "$cmd_routes" "$(grep -vx 'GET /events' <<<"$qry_routes")"
"$GEN" routes "$TEST_TMP/less" >"$TEST_TMP/less.conf" ||
	fail "scripts/gateway routes failed on a table with a route less"
if cmp -s "$CONF" "$TEST_TMP/less.conf"; then
	fail "without GET /events the route table is the same"
fi
expect_eq "$(diff "$CONF" "$TEST_TMP/less.conf" | grep -c '^[<>]')" 2 \
	"lines that differ without GET /events"
grep -F '/events\z' "$TEST_TMP/less.conf" | grep -vF '/[^/]+/events' &&
	fail "the table without GET /events still routes /events"
grep -qF '"~^(GET|HEAD) /events\z" tandem_query;' "$CONF" ||
	fail "routes.conf does not route GET /events to the query side"
fake "$TEST_TMP/more" "$cmd_routes"$'\nPOST /accounts/{id}/freeze' \
	"$qry_routes"
"$GEN" routes "$TEST_TMP/more" >"$TEST_TMP/more.conf" ||
	fail "scripts/gateway routes failed on a table with a made-up route"
grep -qF '"~^POST /accounts/[^/]+/freeze\z" tandem_command;' \
	"$TEST_TMP/more.conf" ||
	fail "the made-up POST /accounts/{id}/freeze is not routed:" \
		"$(diff "$CONF" "$TEST_TMP/more.conf")"
expect_eq "$(diff "$CONF" "$TEST_TMP/more.conf" | grep -c '^[<>]')" 2 \
	"lines that differ with POST /accounts/{id}/freeze"

say "the generator refuses what the maps cannot say"
# gen_refuses NAME COMMAND_ROUTES QUERY_ROUTES MESSAGE
gen_refuses()
{
	fake "$TEST_TMP/$1" "$2" "$3"
	if "$GEN" routes "$TEST_TMP/$1" >/dev/null 2>"$TEST_TMP/$1.err"; then
		fail "scripts/gateway routes accepts $1"
	fi
	grep -qF -- "$4" "$TEST_TMP/$1.err" ||
		fail "$1 refused for another reason: $(cat "$TEST_TMP/$1.err")"
}
gen_refuses overlap "$cmd_routes"$'\nPOST /accounts/stats' "$qry_routes" \
	"one path can match both /accounts/stats and /accounts/{id}"
gen_refuses both "$cmd_routes"$'\nDELETE /events' \
	"$qry_routes"$'\nDELETE /events' "both services serve DELETE /events"
gen_refuses line "$cmd_routes" "$qry_routes"$'\nGET /a b' \
	'not "METHOD /path" from query-service: GET /a b'
gen_refuses empty "$cmd_routes" "" "query-service --routes printed nothing"

# ---- the services and the gateway ----

migrate_db
start_service CMD command-service
start_service QRY query-service

GW_DIR=$TEST_TMP/gw
GW_PORT=$(free_port)
"$GEN" conf "$GW_DIR" "$GW_PORT" "127.0.0.1:$CMD_PORT" "127.0.0.1:$QRY_PORT" ||
	fail "scripts/gateway conf failed"
"$GEN" test "$GW_DIR" ||
	fail "scripts/gateway test: $(tail -n 5 "$GW_DIR/error.log" 2>/dev/null)"
"$GEN" exec "$GW_DIR" 2>"$GW_DIR/stderr.log" &
GW_PID=$!
track_pid "$GW_PID"
# SIGTERM to the master before lib.sh's SIGKILL, so its workers go too
at_exit 'kill -TERM "$GW_PID" 2>/dev/null || true; sleep 0.3'
GW=http://127.0.0.1:$GW_PORT
wait_for 10 curl -fsS --max-time 2 -o /dev/null "$GW/health"

# path PATTERN: a path the pattern matches
path()
{
	sed "s/{[^}]*}/$ID/g" <<<"$1"
}

# ---- 2. every route reaches its side ----

# logged LOG ID ROUTE METHOD: LOG has the request ID under ROUTE
logged()
{
	jq -R -e --arg id "$2" --arg route "$3" --arg m "$4" '
		fromjson? | select(.event == "request" and .request_id == $id
			and .route == $route and .method == $m)' "$1" >/dev/null
}

# reaches SIDE METHOD PATTERN [SECONDS]: through the gateway, the request
# reaches SIDE's handler of PATTERN (the route is logged only when one
# matched; POSTs go without a body, so a command handler answers 415 at
# once); its log line may take up to SECONDS (default 5)
n_req=0
reaches()
{
	local side=$1 method=$2 pattern=$3 id log=$TEST_TMP/CMD.log
	local other=$TEST_TMP/QRY.log

	n_req=$((n_req + 1))
	id=t0526-$n_req
	if [ "$side" = query ]; then
		log=$TEST_TMP/QRY.log other=$TEST_TMP/CMD.log
	fi
	http "$method" "$GW$(path "$pattern")" "" -H "X-Request-Id: $id"
	wait_for "${4:-5}" logged "$log" "$id" "$pattern" "$method"
	if grep -qF "\"$id\"" "$other"; then
		fail "$method $pattern reached the other side too"
	fi
}

say "every route of either side reaches its side through the gateway"
while read -r method pattern; do
	case $pattern in
	/health | /ready | /metrics) continue ;; # the query side's
	esac
	reaches command "$method" "$pattern"
done <<<"$cmd_routes"
while read -r method pattern; do
	reaches query "$method" "$pattern"
	[ "$method" != GET ] || reaches query HEAD "$pattern"
done <<<"$qry_routes"
[ "$n_req" -ge 25 ] || fail "only $n_req routes probed"
say "$n_req requests, each at its side's handler"

say "the check fails for a request at the other side"
http GET "$QRY_URL/health" "" -H "X-Request-Id: t0526-wrong"
wait_for 5 logged "$TEST_TMP/QRY.log" t0526-wrong /health GET
if (reaches command GET /health 1) 2>/dev/null; then
	fail "GET /health counted as reaching the command side"
fi

# ---- 3. the gateway's own 405 and 404 ----

# ask URL PATH METHOD...: the answers to each METHOD on PATH (one curl,
# one connection), a line each: "STATUS|Allow|type|title". A 404 or 405
# must be problem+json; its type and title come from the body ("-|-" for
# HEAD, which has none).
ask()
{
	local url=$1 path=$2 m i=0 args=() st allow ctype kind

	shift 2
	for m in "$@"; do
		[ "$i" -eq 0 ] || args+=(--next)
		if [ "$m" = HEAD ]; then
			args+=(--head)
		else
			args+=(-X "$m")
		fi
		args+=(-sS --max-time 10 -o "$TEST_TMP/ask.$i"
			-w '%{http_code}|%header{allow}|%{content_type}\n'
			--url "$url$path")
		i=$((i + 1))
	done
	curl "${args[@]}" >"$TEST_TMP/ask.out" ||
		fail "curl failed on $url$path"
	i=0
	while IFS='|' read -r st allow ctype; do
		kind=
		case $st in
		404 | 405)
			[ "$ctype" = application/problem+json ] ||
				fail "$url: ${*:i+1:1} $path: $st as '$ctype'"
			kind="-|-"
			[ "${*:i+1:1}" = HEAD ] ||
				kind=$(jq -r '"\(.type)|\(.title)"' "$TEST_TMP/ask.$i")
			;;
		esac
		printf '%s|%s|%s\n' "$st" "$allow" "$kind"
		i=$((i + 1))
	done <"$TEST_TMP/ask.out"
	[ "$i" -eq $# ] || fail "$url$path: $i answers to $# requests"
}

# union A B: the methods of two Allow values, A's first, each once
union()
{
	local m out="" seen=","

	for m in ${1//,/ } ${2//,/ }; do
		[[ $seen == *",$m,"* ]] && continue
		seen+="$m,"
		out+="${out:+, }$m"
	done
	printf '%s\n' "$out"
}

# expected C Q: what the gateway must answer, from the command and the
# query service's answers C and Q to the same request: 404 when neither has
# the path, else 405 with the union of their Allow values and their 405's
# type and title
expected()
{
	local cs qs ca qa ck qk

	IFS='|' read -r cs ca ck <<<"$1"
	IFS='|' read -r qs qa qk <<<"$2"
	case "$cs $qs" in
	"404 404")
		[ "$ck" = "$qk" ] || fail "the services' 404s differ: $1 / $2"
		printf '404||%s\n' "$ck"
		;;
	"405 404") printf '405|%s|%s\n' "$ca" "$ck" ;;
	"404 405") printf '405|%s|%s\n' "$qa" "$qk" ;;
	"405 405")
		[ "$ck" = "$qk" ] || fail "the services' 405s differ: $1 / $2"
		printf '405|%s|%s\n' "$(union "$ca" "$qa")" "$ck"
		;;
	*) fail "a service's handler answered: $1 / $2" ;;
	esac
}

# refused PATH METHOD...: the gateway answers each METHOD on PATH as
# `expected` says, from the services' answers on their own ports; the
# expected answers go to $TEST_TMP/expected (a line each)
n_refused=0
refused()
{
	local p=$1 c q g i=1 want got

	shift
	c=$(ask "$CMD_URL" "$p" "$@")
	q=$(ask "$QRY_URL" "$p" "$@")
	g=$(ask "$GW" "$p" "$@")
	: >"$TEST_TMP/expected"
	for m in "$@"; do
		want=$(expected "$(sed -n "${i}p" <<<"$c")" \
			"$(sed -n "${i}p" <<<"$q")")
		got=$(sed -n "${i}p" <<<"$g")
		expect_eq "$got" "$want" "the gateway's answer to $m $p"
		echo "$want" >>"$TEST_TMP/expected"
		i=$((i + 1))
		n_refused=$((n_refused + 1))
	done
}

M405='405|%s|https://tandem.dev/problems/method-not-allowed|Method not allowed'
say "the audit's four: 405 with Allow through the gateway"
# audit PATH METHOD ALLOW: refused, and the services' own Allow is ALLOW
audit()
{
	refused "$1" "$2"
	# shellcheck disable=SC2059 # the format is ours
	expect_eq "$(cat "$TEST_TMP/expected")" "$(printf "$M405" "$3")" \
		"what the services answer to $2 $1"
}
audit /transfers GET POST
audit "/accounts/$ID" POST 'GET, HEAD'
audit /status POST 'GET, HEAD'
audit "/accounts/$ID/deposits" GET POST

say "every other method on every route's path: the union Allow"
# every route, and HEAD with each GET
allowed=$(awk '{print} $1 == "GET" {print "HEAD", $2}' \
	<<<"$cmd_routes"$'\n'"$qry_routes")
while read -r pattern; do
	methods=()
	for m in GET HEAD POST PUT PATCH DELETE OPTIONS; do
		grep -qxF "$m $pattern" <<<"$allowed" || methods+=("$m")
	done
	refused "$(path "$pattern")" "${methods[@]}"
done < <(awk '{print $2}' <<<"$allowed" | sort -u)
[ "$n_refused" -ge 80 ] || fail "only $n_refused wrong methods asked"
say "$n_refused wrong methods, each 405 as the services say"

say "a path of no route: 404 problem+json, whatever the method"
for p in /nope "/accounts/$ID/freeze" "/accounts/$ID/deposits/1" \
	/accounts/ /; do
	refused "$p" GET HEAD POST DELETE OPTIONS
	expect_eq "$(sort -u "$TEST_TMP/expected" | tr '\n' ' ')" \
		"404||-|- 404||https://tandem.dev/problems/not-found|Not found " \
		"what the services answer on $p"
done
