#!/usr/bin/env bash
# t0360-hostile-http.sh - the command service against hostile HTTP: request
# smuggling shapes (duplicated Content-Length, Content-Length with chunked,
# other transfer codings, NUL bytes in header values) answered 400 by us
# and closed; 413 before the body is sent and for a chunked body over the
# cap; 415 on a JSON route; headers beyond the connection memory; garbage;
# hundreds of idle connections and slow drips while a normal client is
# still served, and the 408 for a request that drips past its deadline;
# IDLE_TIMEOUT_SECONDS, MAX_CONNECTIONS and PER_IP_CONNECTION_LIMIT. The
# services must survive all of it with the same PID.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

# `printf ... | raw PORT` sets RAW_* in this shell
shopt -s lastpipe
RAW=$TANDEM_BUILD/tests/rawhttp
[ -x "$RAW" ] || fail "no $RAW (make builds it from tests/integration/rawhttp.c)"
unset LOG_LEVEL PORT

# raw PORT [rawhttp options] < request: send the bytes as they are, expect
# the server to answer and then close the connection. Sets RAW_STATUS,
# RAW_HEADERS, RAW_BODY, RAW_RC (rawhttp's exit status: 0 answered and
# closed, 2 closed without an answer, 3 no answer in time, 4 answered but
# left open).
raw()
{
	local port=$1 out line

	shift
	RAW_RC=0
	out=$("$RAW" -c -t "${RAW_TIMEOUT:-3000}" "$@" "$port" |
		tr -d '\r\0') || RAW_RC=$?
	RAW_STATUS="" RAW_HEADERS="" RAW_BODY=""
	[[ $out == HTTP/* ]] || return 0
	line=${out%%$'\n'*}
	line=${line#* }
	RAW_STATUS=${line%% *}
	RAW_HEADERS=${out%%$'\n\n'*}
	RAW_HEADERS=${RAW_HEADERS#*$'\n'}
	[[ $out != *$'\n\n'* ]] || RAW_BODY=${out#*$'\n\n'}
}

raw_header()
{
	local line

	while IFS= read -r line; do
		if [ "${line%%:*}" != "${line}" ] &&
			[ "${line%%:*}" = "$1" ]; then
			printf '%s\n' "${line#*: }"
			return 0
		fi
	done <<<"$RAW_HEADERS"
}

# expect_raw_problem STATUS DETAIL_PART [keep]: answered STATUS as
# problem+json whose detail holds DETAIL_PART, with Connection: close, and
# closed; with "keep", the connection may stay open instead.
expect_raw_problem()
{
	[ "$RAW_STATUS" = "$1" ] ||
		fail "expected $1, got '$RAW_STATUS' (rawhttp exit $RAW_RC):" \
			"$RAW_HEADERS $RAW_BODY"
	expect_eq "$(raw_header Content-Type)" application/problem+json \
		"Content-Type of the $1"
	[[ $(jq -r '"\(.status) \(.detail)"' <<<"$RAW_BODY") == "$1 "*"$2"* ]] ||
		fail "expected status $1 and a detail with '$2': $RAW_BODY"
	if [ "${3:-}" = keep ] && [ "$RAW_RC" = 4 ]; then
		return 0
	fi
	expect_eq "$(raw_header Connection)" close "Connection header"
	expect_eq "$RAW_RC" 0 "rawhttp exit status (0: answered, then closed)"
}

# alive PREFIX: same PID still running, /health answers 200 within 2 s.
alive()
{
	local pid_var=${1}_PID url_var=${1}_URL code

	kill -0 "${!pid_var}" 2>/dev/null || fail "$1 (PID ${!pid_var}) died"
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
		"${!url_var}/health") || true
	expect_eq "$code" 200 "GET /health on $1"
}

# wait_lines FILE PATTERN N SECONDS: FILE has N lines matching PATTERN.
wait_lines()
{
	local end=$(($(_lib_now_ms) + $4 * 1000))

	while [ "$(grep -c -- "$2" "$1" 2>/dev/null || true)" -lt "$3" ]; do
		if [ "$(_lib_now_ms)" -ge "$end" ]; then
			fail "waited $4 s for $3 lines '$2' in $1:" \
				"$(sort "$1" | uniq -c | head -n 20)"
		fi
		sleep 0.05
	done
}

migrate_db
# no per-address limit: the siege below (320 connections, all from
# 127.0.0.1) is about MAX_CONNECTIONS and the timeouts; t0365 floods
# against the default PER_IP_CONNECTION_LIMIT. A header deadline past the
# siege: its idle connections and header drips stay (t0366 tests the
# deadline).
start_service CMD command-service BIND_ADDRESS=127.0.0.1 MAX_BODY_BYTES=1024 \
	MAX_CONNECTIONS=500 CONNECTION_MEMORY_BYTES=16384 \
	IDLE_TIMEOUT_SECONDS=30 REQUEST_TIMEOUT_SECONDS=3 \
	HEADER_TIMEOUT_SECONDS=30 PER_IP_CONNECTION_LIMIT=0
P=$CMD_PORT
pid=$CMD_PID

OPEN='{"owner":"Hostile","currency":"EUR"}'

say "smuggling shapes: 400 problem+json from us, then closed"
printf 'POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc' |
	raw "$P"
expect_raw_problem 400 "duplicated Content-Length"
printf 'POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' |
	raw "$P"
expect_raw_problem 400 "Content-Length together with Transfer-Encoding"
printf 'GET /health HTTP/1.1\r\nHost: t\r\nX-Note: a\0b\r\n\r\n' | raw "$P"
expect_raw_problem 400 "header 'X-Note' contains a NUL byte"
printf 'GET /health HTTP/1.1\r\nX-Note: \0\r\nHost: t\r\n\r\n' | raw "$P"
expect_raw_problem 400 "header 'X-Note' contains a NUL byte"
printf 'POST /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc' |
	raw "$P"
expect_raw_problem 400 "Transfer-Encoding 'gzip' is not supported"
printf 'POST /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n' |
	raw "$P"
expect_raw_problem 400 "more than one Transfer-Encoding"
printf 'POST /health HTTP/1.1\r\nHost: t\r\nContent-Length : 3\r\n\r\nabc' |
	raw "$P"
expect_raw_problem 400 "not a valid token"
printf 'GET /health%%00 HTTP/1.1\r\nHost: t\r\n\r\n' | raw "$P"
expect_raw_problem 400 "request target"
# a sane request still works, on a kept-alive connection (rawhttp exit 4)
printf 'GET /health HTTP/1.1\r\nHost: t\r\nX-Note: ok\r\n\r\n' | RAW_TIMEOUT=500 raw "$P"
expect_eq "$RAW_STATUS/$RAW_RC" 200/4 "plain GET: status/rawhttp exit"

say "413 from Content-Length, before any body byte is sent"
printf 'GET /health HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n' |
	raw "$P"
expect_raw_problem 413 "larger than 1024 bytes"
printf 'GET /health HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1025\r\n\r\n' |
	raw "$P"
expect_raw_problem 413 "larger than 1024 bytes"

say "a chunked body past MAX_BODY_BYTES is 413"
chunked_body()
{
	local i

	for i in $(seq 1 "$1"); do
		printf '64\r\n%0100d\r\n' 0
	done
	printf '0\r\n\r\n'
}
{
	printf 'GET /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n'
	chunked_body 30
} | RAW_TIMEOUT=700 raw "$P"
expect_raw_problem 413 "larger than 1024 bytes" keep

say "headers beyond CONNECTION_MEMORY_BYTES: libmicrohttpd's 431, no crash"
{
	printf 'GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: '
	head -c 20000 /dev/zero | tr '\0' a
	printf '\r\n\r\n'
} >"$TEST_TMP/big-headers.req"
raw "$P" <"$TEST_TMP/big-headers.req"
expect_eq "$RAW_STATUS" 431 "status for 20 kB of headers"
{
	printf 'GET /health?q='
	head -c 20000 /dev/zero | tr '\0' a
	printf ' HTTP/1.1\r\nHost: t\r\n\r\n'
} | raw "$P"
expect_eq "$RAW_STATUS" 414 "status for a 20 kB request line"
alive CMD

say "garbage: no crash"
mkdir -p "$TEST_TMP/garbage"
for i in $(seq 1 24); do
	head -c $((i * 397)) /dev/urandom >"$TEST_TMP/garbage/$i"
done
printf '\0\0\0\0\r\n\r\n' >"$TEST_TMP/garbage/nul"
printf 'GET / HTTP/1.1\r\n%.0s' $(seq 1 50) >"$TEST_TMP/garbage/lines"
printf 'POST /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n' \
	>"$TEST_TMP/garbage/badchunk"
printf 'GET /health HTTP/9.9\r\n\r\n' >"$TEST_TMP/garbage/version"
printf 'POST /health HTTP/1.1\r\nContent-Length: -5\r\n\r\n' \
	>"$TEST_TMP/garbage/negative"
printf 'POST /health HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n' \
	>"$TEST_TMP/garbage/huge"
gpids=()
for f in "$TEST_TMP"/garbage/*; do
	"$RAW" -t 1500 "$P" <"$f" >/dev/null 2>&1 &
	gpids+=($!)
done
for g in "${gpids[@]}"; do
	wait "$g" || true
done
alive CMD

say "IDLE_TIMEOUT_SECONDS=2 closes idle connections (checked later)"
start_service IDL command-service BIND_ADDRESS=127.0.0.1 IDLE_TIMEOUT_SECONDS=2
"$RAW" -n 3 -k -t 12000 "$IDL_PORT" </dev/null >"$TEST_TMP/idle2.out" &
idle2_pid=$!
track_pid "$idle2_pid"

say "300 idle connections and 20 slow drips; /health is still quick"
"$RAW" -n 300 -k -t 25000 "$P" </dev/null >"$TEST_TMP/idle.out" &
idle_pid=$!
track_pid "$idle_pid"
# 10 drip their headers (never complete in time), 10 their bodies: the
# bodies are past REQUEST_TIMEOUT_SECONDS (3 s) after about 3 s: 408
printf 'GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: %060d\r\n\r\n' 0 |
	"$RAW" -n 10 -d 1000 -k -t 25000 "$P" >"$TEST_TMP/drip-head.out" &
head_pid=$!
track_pid "$head_pid"
printf 'POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 60\r\n\r\n%060d' 0 |
	"$RAW" -n 10 -b -d 1000 -k -t 25000 "$P" >"$TEST_TMP/drip-body.out" &
body_pid=$!
track_pid "$body_pid"
wait_lines "$TEST_TMP/idle.out" '^connected 300$' 1 10
wait_lines "$TEST_TMP/drip-head.out" '^connected 10$' 1 10
wait_lines "$TEST_TMP/drip-body.out" '^connected 10$' 1 10
for i in 1 2 3 4 5 6; do
	t0=$(_lib_now_ms)
	alive CMD
	t=$(($(_lib_now_ms) - t0))
	[ "$t" -lt 1500 ] || fail "GET /health took $t ms under the siege"
	sleep 0.5
done
wait_lines "$TEST_TMP/drip-body.out" '^answer [0-9]* 408 ' 10 8
if grep -q '^closed' "$TEST_TMP/idle.out"; then
	fail "idle connections were closed before IDLE_TIMEOUT_SECONDS:" \
		"$(grep -c '^closed' "$TEST_TMP/idle.out")"
fi
if grep -q '^answer' "$TEST_TMP/drip-head.out"; then
	fail "a header drip got an answer before its headers were complete"
fi
kill "$idle_pid" "$head_pid" "$body_pid"
wait "$idle_pid" "$head_pid" "$body_pid" || true
wait_lines "$TEST_TMP/idle.out" '^done answered 0 closed 0 open 300$' 1 5
alive CMD
wait_lines "$TEST_TMP/idle2.out" '^closed ' 3 10
while read -r _ i ms; do
	if [ "$ms" -lt 1500 ] || [ "$ms" -gt 5000 ]; then
		fail "idle connection $i closed after $ms ms, not about 2 s"
	fi
done < <(grep '^closed ' "$TEST_TMP/idle2.out")
kill "$idle2_pid"
wait "$idle2_pid" || true
alive IDL

say "JSON route POST /accounts: 415, 413, 400 before the handler"
events()
{
	psql_q "SELECT count(*) FROM events"
}
before=$(events)
for ct in "" "text/json" "application/jsonx" "text/plain" \
	"application/json; charset=latin1" "application/json; x=y"; do
	args=(-H "Content-Type: $ct")
	# an empty -H "Content-Type:" makes curl send none at all
	[ -n "$ct" ] || args=(-H "Content-Type:")
	http POST "$CMD_URL/accounts" "$OPEN" "${args[@]}"
	expect_status 415
	expect_header Content-Type application/problem+json
done
for ct in "application/json" "application/json; charset=utf-8" \
	"application/json;charset=UTF-8" "Application/JSON ; charset=\"utf-8\""; do
	http POST "$CMD_URL/accounts" "$OPEN" -H "Content-Type: $ct"
	expect_status 201
done
after=$(events)
expect_eq "$after" "$((before + 4))" "events after 4 accepted opens"
body=$OPEN
printf 'POST /accounts HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n%s' "$AUTH_HEADER" \
	"${#body}" "${#body}" "$body" | raw "$P"
expect_raw_problem 400 "duplicated Content-Length"
printf 'POST /accounts HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n' "$AUTH_HEADER" \
	"${#body}" "${#body}" "$body" | raw "$P"
expect_raw_problem 400 "Content-Length together with Transfer-Encoding"
printf 'POST /accounts HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Type: application/json\r\nX-Correlation-Id: a\0b\r\nContent-Length: %d\r\n\r\n%s' "$AUTH_HEADER" \
	"${#body}" "$body" | raw "$P"
expect_raw_problem 400 "contains a NUL byte"
printf 'POST /accounts HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n%s' "$AUTH_HEADER" \
	"$body" | raw "$P"
expect_raw_problem 400 "is not supported"
printf 'POST /accounts HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n' "$AUTH_HEADER" |
	raw "$P"
expect_raw_problem 413 "larger than 1024 bytes"
{
	printf 'POST /accounts HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' "$AUTH_HEADER"
	chunked_body 12
} | RAW_TIMEOUT=700 raw "$P"
expect_raw_problem 413 "larger than 1024 bytes" keep
expect_eq "$(events)" "$after" "events after the refused requests"
# the handler's work is fine with chunked bodies under the cap
printf 'POST /accounts HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\n\r\n' "$AUTH_HEADER" \
	"${#body}" "$body" | raw "$P"
expect_eq "$RAW_STATUS" 201 "chunked POST /accounts under the cap"
expect_eq "$(events)" "$((after + 1))" "events after a chunked open"

expect_eq "$CMD_PID" "$pid" "PID of the service"
alive CMD

say "MAX_CONNECTIONS=50: the 51st waits unanswered, served after others close"
start_service LIM command-service BIND_ADDRESS=127.0.0.1 MAX_CONNECTIONS=50
printf 'GET /health HTTP/1.1\r\nHost: t\r\n\r\n' >"$TEST_TMP/keepalive.req"
"$RAW" -n 50 -k -t 20000 "$LIM_PORT" <"$TEST_TMP/keepalive.req" \
	>"$TEST_TMP/hold50.out" &
hold_pid=$!
track_pid "$hold_pid"
wait_lines "$TEST_TMP/hold50.out" '^answer [0-9]* 200 ' 50 10
printf 'GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' |
	RAW_TIMEOUT=1500 raw "$LIM_PORT"
[ -z "$RAW_STATUS" ] || fail "the 51st connection got an answer: $RAW_STATUS"
case $RAW_RC in
2 | 3) ;;
*) fail "the 51st connection: rawhttp exit $RAW_RC, expected 2 or 3" ;;
esac
if grep -q '^closed' "$TEST_TMP/hold50.out"; then
	fail "held connections were closed: $(cat "$TEST_TMP/hold50.out")"
fi
kill "$hold_pid"
wait "$hold_pid" || true
alive LIM
raw "$LIM_PORT" <"$TEST_TMP/big-headers.req"
expect_eq "$RAW_STATUS" 200 "20 kB of headers with CONNECTION_MEMORY_BYTES=32768"

say "PER_IP_CONNECTION_LIMIT=5: the 6th connection from 127.0.0.1 is closed"
start_service PIP command-service BIND_ADDRESS=127.0.0.1 \
	PER_IP_CONNECTION_LIMIT=5
"$RAW" -n 5 -k -t 20000 "$PIP_PORT" <"$TEST_TMP/keepalive.req" \
	>"$TEST_TMP/hold5.out" &
hold_pid=$!
track_pid "$hold_pid"
wait_lines "$TEST_TMP/hold5.out" '^answer [0-9]* 200 ' 5 10
printf 'GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' |
	RAW_TIMEOUT=1500 raw "$PIP_PORT"
expect_eq "$RAW_STATUS/$RAW_RC" /2 "6th connection: status/rawhttp exit"
if grep -q '^closed' "$TEST_TMP/hold5.out"; then
	fail "held connections were closed: $(cat "$TEST_TMP/hold5.out")"
fi
kill "$hold_pid"
wait "$hold_pid" || true
wait_for 5 curl -sf --max-time 1 -o /dev/null "$PIP_URL/health"

say "everything survived"
alive CMD
alive IDL
alive LIM
alive PIP
expect_eq "$CMD_PID" "$pid" "PID of the service"
