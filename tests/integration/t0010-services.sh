#!/usr/bin/env bash
# t0010-services.sh - both service binaries: command line, configuration
# errors, /health, /ready against an unmigrated, migrated, unreachable and
# restarted database, problem+json for unknown routes and wrong methods,
# the request log line, and a clean exit on SIGTERM and SIGINT.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

unset LOG_LEVEL PORT READ_DATABASE_URL
# bin/migrate looks beside its own directory; a private build dir has none
export MIGRATIONS_DIR=$TANDEM_ROOT/migrations

# log_has PREFIX JQ_CONDITION: a JSON line of $TEST_TMP/PREFIX.log matches.
log_has()
{
	[ -n "$(jq -Rc "fromjson? | select($2)" "$TEST_TMP/$1.log")" ]
}

# run_fails BINARY STATUS MESSAGE [VAR=VALUE...] -- [ARGS...]: the binary
# exits with STATUS and says MESSAGE on stderr, without serving anything.
run_fails()
{
	local bin=$1 want=$2 msg=$3 rc=0 err
	local vars=()

	shift 3
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		vars+=("$1")
		shift
	done
	[ $# -eq 0 ] || shift
	err=$(env "${vars[@]}" timeout 10 "$TANDEM_BIN/$bin" "$@" 2>&1 \
		>/dev/null) || rc=$?
	expect_eq "$rc" "$want" "$bin ${vars[*]} $*: exit status"
	expect_eq "$err" "$msg" "$bin ${vars[*]} $*: message"
}

expect_problem()
{
	expect_status "$1"
	expect_header Content-Type application/problem+json
	expect_json .status "$1"
	expect_json '.type | startswith("https://")' true
	expect_json '.detail | length > 0' true
}

for svc in command-service query-service; do
	say "$svc: --help and --version"
	out=$("$TANDEM_BIN/$svc" --help) || fail "$svc --help failed"
	for v in DATABASE_URL PORT MAX_BODY_BYTES BIND_ADDRESS HTTP_THREADS \
		MAX_CONNECTIONS PER_IP_CONNECTION_LIMIT CONNECTION_MEMORY_BYTES \
		IDLE_TIMEOUT_SECONDS LOG_LEVEL; do
		[[ $out == *"$v"* ]] || fail "$svc --help does not list $v"
	done
	[[ $out == "Usage: $svc"* ]] || fail "$svc --help: $out"
	out=$("$TANDEM_BIN/$svc" --version) || fail "$svc --version failed"
	[[ $out =~ ^$svc\ [0-9]+\.[0-9]+\.[0-9]+ ]] ||
		fail "$svc --version: '$out'"

	say "$svc: bad settings stop it with exit status 2"
	run_fails "$svc" 2 \
		"$svc: 'PORT' must be an integer in [1, 65535], got '70000'" \
		DATABASE_URL="$DATABASE_URL" PORT=70000
	run_fails "$svc" 2 "$svc: 'DATABASE_URL' is required" \
		DATABASE_URL= PORT=1
	run_fails "$svc" 2 \
		"$svc: 'MAX_BODY_BYTES' must be an integer in [1, 16777216], got 'lots'" \
		DATABASE_URL="$DATABASE_URL" MAX_BODY_BYTES=lots
	run_fails "$svc" 2 \
		"$svc: 'LOG_LEVEL' must be debug, info, warn, error or off, got 'loud'" \
		DATABASE_URL="$DATABASE_URL" LOG_LEVEL=loud
	run_fails "$svc" 2 \
		"$svc: '--port' must be an integer in [1, 65535], got '0'" \
		DATABASE_URL="$DATABASE_URL" -- --port 0
	run_fails "$svc" 2 "$svc: unknown argument '--nope' (try --help)" \
		DATABASE_URL="$DATABASE_URL" -- --nope
done

say "both services start on an unmigrated database"
start_service CMD command-service BIND_ADDRESS=127.0.0.1
start_service QRY query-service BIND_ADDRESS=127.0.0.1

for p in CMD QRY; do
	url_var=${p}_URL
	url=${!url_var}
	port_var=${p}_PORT
	say "$p: /health, /ready, 404, 405, HEAD"
	http GET "$url/health"
	expect_status 200
	expect_header Content-Type application/json
	expect_json .status ok

	http GET "$url/ready"
	expect_problem 503
	expect_header Retry-After 1
	expect_json .detail "schema not migrated: no migrations applied"

	http GET "$url/no/such/route"
	expect_problem 404

	http POST "$url/health" '{}'
	expect_problem 405
	expect_header Allow "GET, HEAD"

	http HEAD "$url/health"
	expect_status 200
	expect_eq "$HTTP_BODY" "" "HEAD /health body"

	http GET "$url/health" "" -H 'X-Request-Id: t0010-req-1'
	expect_header X-Request-Id t0010-req-1

	say "$p: one JSON log line per request, with the route"
	wait_for 5 log_has "$p" '.event == "request" and
		.request_id == "t0010-req-1" and .method == "GET" and
		.route == "/health" and .status == 200 and
		(.duration_ms | type) == "number"'
	log_has "$p" '.event == "request" and .route == "/ready" and
		.status == 503' || fail "$p: no request line for /ready"
	log_has "$p" '.event == "request" and .route == null and
		.status == 404' || fail "$p: no request line for the 404"
	log_has "$p" ".event == \"listening\" and .port == ${!port_var}" ||
		fail "$p: no startup line with the port"
done

say "after migrate, /ready turns 200 without a restart"
migrate_db
for p in CMD QRY; do
	url_var=${p}_URL
	http GET "${!url_var}/ready"
	expect_status 200
	expect_json .status ready
done

say "SIGTERM and SIGINT: clean exit 0"
expect_eq "$(stop_pid "$CMD_PID" TERM)" 0 "command-service after SIGTERM"
expect_eq "$(stop_pid "$QRY_PID" INT)" 0 "query-service after SIGINT"
log_has CMD '.event == "stopped"' || fail "command-service did not log stopped"
log_has QRY '.event == "stopped"' || fail "query-service did not log stopped"

say "an unreachable database does not stop the services"
dead="postgresql://tandem@127.0.0.1:$(free_port)/nowhere?connect_timeout=2"
start_service DCMD command-service DATABASE_URL="$dead" \
	BIND_ADDRESS=127.0.0.1
start_service DQRY query-service DATABASE_URL="$dead" BIND_ADDRESS=127.0.0.1
for p in DCMD DQRY; do
	url_var=${p}_URL
	http GET "${!url_var}/health"
	expect_status 200
	http GET "${!url_var}/ready"
	expect_problem 503
	expect_header Retry-After 1
	expect_json .detail "database unreachable"
done
expect_eq "$(stop_pid "$DCMD_PID")" 0 "command-service exit status"
expect_eq "$(stop_pid "$DQRY_PID")" 0 "query-service exit status"

say "--port wins over PORT"
p1=$(free_port)
p2=$(free_port)
PORT=$p1 DATABASE_URL=$DATABASE_URL BIND_ADDRESS=127.0.0.1 \
	"$TANDEM_BIN/command-service" --port "$p2" \
	>"$TEST_TMP/portflag.log" 2>&1 &
pid=$!
track_pid "$pid"
wait_for 10 curl -sf "http://127.0.0.1:$p2/health"
HTTP_ALLOW_FAIL=1 http GET "http://127.0.0.1:$p1/health" 2>/dev/null ||
	true
expect_eq "$HTTP_STATUS" 000 "nothing listens on PORT when --port is given"
stop_pid "$pid" >/dev/null
expect_eq "$STOP_STATUS" 0 "command-service --port exit status"

say "/ready follows the database going away and coming back"
pg_own_start
migrate_db "$OWN_DATABASE_URL"
start_service OWN query-service DATABASE_URL="$OWN_DATABASE_URL" \
	BIND_ADDRESS=127.0.0.1
http GET "$OWN_URL/ready"
expect_status 200
pg_own_stop
http GET "$OWN_URL/ready"
expect_problem 503
expect_header Retry-After 1
http GET "$OWN_URL/health"
expect_status 200
pg_own_start
wait_for 15 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' \
	'$OWN_URL/ready')\" = 200 ]"
expect_eq "$(stop_pid "$OWN_PID")" 0 "query-service exit status"
