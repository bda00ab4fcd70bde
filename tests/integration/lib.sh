# tests/integration/lib.sh - sourced by every integration test:
#
#	. "$(dirname "$0")/lib.sh"
#
# scripts/run-tests gives each test a fresh database on one shared throwaway
# cluster and this environment: TANDEM_ROOT, TANDEM_BIN, TANDEM_BUILD,
# PGHOST, PGPORT, PGUSER, PGDATABASE, DATABASE_URL, TANDEM_PG_DIR, TEST_TMP.
# Sourcing this file turns on `set -eu -o pipefail` and installs an EXIT trap
# that kills every process started with start_service or registered with
# track_pid, and destroys the clusters of pg_own_start; use at_exit for your
# own clean-up instead of replacing the trap.
#
# On failure the EXIT trap also prints the tail of each service's log and
# the failing line ("FAIL: exit 1 at line 42: ..."), so the runner's last 40
# lines of the test's log say what went wrong.
#
# Helpers that check something exit the test with "FAIL: ..." (fail) rather
# than return non-zero, because `set -e` ignores a failure in the middle of
# an && chain. Called inside $(...) or ( ... ) they only end that subshell.
#
#   fail MSG...                      print "FAIL: MSG" on stderr, exit 1
#   skip MSG...                      print "SKIP: MSG" on stderr, exit 77:
#                                    the test cannot run here (a kernel
#                                    feature or privilege is missing);
#                                    scripts/run-tests counts it as skipped
#   say MSG...                       progress note on stderr ("# [1.23s] MSG")
#   free_port                        print a free loopback TCP port
#   psql_q SQL [psql args]           run SQL on $DATABASE_URL, print rows
#   new_db NAME                      create database NAME, print its URI
#   db_url NAME                      print the URI of database NAME
#   migrate_db [URL]                 run $TANDEM_BIN/migrate on URL (default
#                                    $DATABASE_URL) with this tree's
#                                    migrations/ unless MIGRATIONS_DIR is set
#   start_service PREFIX BINARY [VAR=VALUE...]
#                                    start $TANDEM_BIN/BINARY on a free port
#                                    (or PORT=N), log in $TEST_TMP/PREFIX.log
#                                    (the previous one in PREFIX.log.prev),
#                                    wait for GET /health = 200 (up to
#                                    START_TIMEOUT s, default 15); sets
#                                    PREFIX_URL, PREFIX_PID, PREFIX_PORT
#   stop_pid PID [SIGNAL]            signal (default TERM), wait up to 20 s,
#                                    print the exit status as wait reports it
#                                    (128+N for signal N); also STOP_STATUS.
#                                    Works in $(...) for start_service PIDs;
#                                    for other PIDs only the parent shell
#                                    learns the status (else it is "")
#   track_pid PID                    kill PID at exit if it still runs
#   at_exit CMD                      eval CMD at exit (before the kills)
#   http METHOD URL [BODY] [curl args...]
#                                    sets HTTP_STATUS, HTTP_BODY,
#                                    HTTP_HEADERS; a transport error fails
#                                    unless HTTP_ALLOW_FAIL=1 (then
#                                    HTTP_STATUS=000 and curl's exit code)
#   header NAME                      print a response header's value
#   has_header NAME                  true if the response has it
#   expect_status N
#   expect_json JQ_FILTER EXPECTED   compares jq -r FILTER <<<"$HTTP_BODY"
#   expect_header NAME EXPECTED
#   expect_eq ACTUAL EXPECTED [MSG]
#   wait_for SECONDS CMD...          retry CMD (in a subshell, quietly)
#                                    every 0.1 s; fail after SECONDS
#   mint SUB ROLES [ARGS...]         a token of the tests' key for SUB with
#                                    ROLES (comma-separated, may be ""),
#                                    printed; ARGS go to tandem-token mint
#   AS=TOKEN http ...                send TOKEN instead of ADMIN_TOKEN;
#                                    AS=none sends no Authorization
#   with_auth FILE                   a curl config of several requests
#                                    ("next" resets the .curlrc's header):
#                                    ADMIN_TOKEN after each url line
#
# Who the tests are: each test has a signing key of its own, a JWK Set
# the services read (AUTH_JWKS_FILE, AUTH_ISSUER and AUTH_AUDIENCE are
# exported, so every start_service gets them) and ADMIN_TOKEN, a token
# with every role that curl sends on every request ($CURL_HOME/.curlrc),
# so that a test of something else needs no token of its own.
#
#   pg_own_start [DIR [PORT]]        a separate cluster (default DIR:
#   pg_own_stop [DIR]                $TEST_TMP/own-pg) for tests that stop
#   pg_own_restart [DIR]             the database; sets OWN_DATABASE_URL,
#                                    OWN_PGHOST, OWN_PGPORT, OWN_PG_PID,
#                                    OWN_PG_DIR; a restarted or re-started
#                                    cluster keeps its port
#   pg_own_standby PRIMARY DIR [sync] a hot standby of an own cluster;
#                                    sets OWN_* to the standby's
#   pg_own_failover_pair PRIMARY STANDBY  both, the standby synchronous;
#                                    P_*, S_* and FAILOVER_URL (multi-host)
#   proxy_own_start                  tests/tcp_proxy in front of the own
#   proxy_own_cut                    cluster (OWN_PGPORT): PX_URL reaches
#                                    the database through it; the cut kills
#                                    it (the server notices nothing), a
#                                    start again keeps PX_PORT
#
# shellcheck shell=bash
# shellcheck disable=SC2034 # OWN_*, STOP_STATUS, HTTP_*, UUID*_RE are for the tests

set -eu -o pipefail

TANDEM_ROOT=${TANDEM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TANDEM_BIN=${TANDEM_BIN:-$TANDEM_ROOT/bin}
TANDEM_BUILD=${TANDEM_BUILD:-$TANDEM_ROOT/build/rel}
export TANDEM_ROOT TANDEM_BIN TANDEM_BUILD
PATH=/usr/lib/postgresql/15/bin:$PATH
export PATH

# a UUID in its lower-case text form; one of version 7 (time-ordered)
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
UUID7_RE='^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$'

_LIB_OWN_TMP=0
if [ -z "${TEST_TMP:-}" ]; then
	TEST_TMP=$(mktemp -d)
	chmod 755 "$TEST_TMP"
	_LIB_OWN_TMP=1
fi
export TEST_TMP
# Book-keeping lives in files so that helpers called in subshells count.
_LIB=$TEST_TMP/.lib
mkdir -p "$_LIB"
: >"$_LIB/pids"
: >"$_LIB/clusters"
: >"$_LIB/services"
rm -f "$_LIB/failmsg"

# The tests' identity (see above); AUTH_HEADER is for raw requests.
AUTH_ISSUER=https://tandem.test
AUTH_AUDIENCE=tandem
AUTH_JWKS_FILE=$_LIB/auth/jwks.json
AUTH_KEY=$_LIB/auth/key.pem
export AUTH_ISSUER AUTH_AUDIENCE AUTH_JWKS_FILE
mint()
{
	local sub=$1 roles=$2

	shift 2
	"$TANDEM_BIN/tandem-token" mint --key "$AUTH_KEY" --kid test-1 --sub "$sub" \
		--roles "$roles" --iss "$AUTH_ISSUER" --aud "$AUTH_AUDIENCE" "$@"
}
if [ ! -s "$AUTH_JWKS_FILE" ] && [ -x "$TANDEM_BIN/tandem-token" ]; then
	mkdir -p "$_LIB/auth"
	"$TANDEM_BIN/tandem-token" keygen --alg ES256 --kid test-1 \
		--private "$AUTH_KEY" --jwks "$AUTH_JWKS_FILE" >/dev/null
	chmod 644 "$AUTH_JWKS_FILE"
	mint tandem-test holder,manager,auditor,service,operator \
		--ttl 86400 >"$_LIB/auth/admin"
	printf 'header = "Authorization: Bearer %s"\n' \
		"$(cat "$_LIB/auth/admin")" >"$_LIB/auth/.curlrc"
fi
ADMIN_TOKEN=$(cat "$_LIB/auth/admin" 2>/dev/null || true)
# with_auth CONFIG: the admin token on every request of a curl config;
# run that curl with -q first, or the .curlrc's header comes on top of
# it on the first request (two Authorization headers are refused)
with_auth()
{
	sed -i -E "s/^([[:space:]]*)url = .*$/&\n\1header = \"Authorization: Bearer $ADMIN_TOKEN\"/" "$1"
}
AUTH_HEADER="Authorization: Bearer $ADMIN_TOKEN"
# what tandem-bench and the tests' C clients send
TANDEM_TOKEN=$ADMIN_TOKEN
export TANDEM_TOKEN
CURL_HOME=$_LIB/auth
export CURL_HOME

_LIB_AT_EXIT=()
_LIB_T0=${EPOCHREALTIME/[.,]/}
_LIB_T0=$((_LIB_T0 / 1000))
_LIB_CLEANING=0
_LIB_ERR_CMD=
_LIB_ERR_LINE=
declare -A _LIB_OWN_PORTS=()
HTTP_STATUS=
HTTP_BODY=
HTTP_HEADERS=
STOP_STATUS=

fail()
{
	printf 'FAIL: %s\n' "$*" >&2
	# Inside the EXIT trap (an at_exit command) exiting would skip the rest
	# of the clean-up.
	if [ "$_LIB_CLEANING" -eq 1 ]; then
		return 1
	fi
	# Repeated at the end of the log; not for a deliberate failure in a
	# subshell (a test checking that something fails).
	if [ "$BASHPID" = "$$" ]; then
		printf '%s\n' "$*" >"$_LIB/failmsg" 2>/dev/null || true
	fi
	exit 1
}

skip()
{
	printf 'SKIP: %s\n' "$*" >&2
	exit 77
}

# Progress note with the seconds since the test began.
say()
{
	local t=$(($(_lib_now_ms) - _LIB_T0))

	printf '# [%d.%02ds] %s\n' $((t / 1000)) $((t % 1000 / 10)) "$*" >&2
}

# First 2000 characters of a body, for failure messages.
_lib_short()
{
	local s=$1

	if [ "${#s}" -gt 2000 ]; then
		s="${s:0:2000}..."
	fi
	printf '%s' "$s"
}

_lib_now_ms()
{
	local t=${EPOCHREALTIME/[.,]/}

	echo $((t / 1000))
}

# Start time of a process in clock ticks since boot (field 22 of
# /proc/PID/stat), to tell a process from a later one reusing its PID.
_lib_starttime()
{
	local stat rest f

	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	rest=${stat##*) }
	read -ra f <<<"$rest"
	echo "${f[19]:-}"
}

# Parent PID of a process, empty when it is gone.
_lib_ppid()
{
	local stat rest f

	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	rest=${stat##*) }
	read -ra f <<<"$rest"
	echo "${f[1]:-}"
}

# State letter of a process (R, S, Z...), empty when it is gone.
_lib_state()
{
	local stat rest

	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	rest=${stat##*) }
	echo "${rest%% *}"
}

track_pid()
{
	local pid=$1 st

	case $pid in
	'' | *[!0-9]*) fail "track_pid: bad pid '$pid'" ;;
	esac
	st=$(_lib_starttime "$pid")
	echo "$pid $st" >>"$_LIB/pids"
}

at_exit()
{
	_LIB_AT_EXIT+=("$*")
}

_lib_bindable()
{
	perl -MIO::Socket::INET -e '
		IO::Socket::INET->new(LocalAddr => "127.0.0.1",
			LocalPort => $ARGV[0], Listen => 1, ReuseAddr => 1)
			or exit 1;' "$1" 2>/dev/null
}

free_port()
{
	local p i

	touch "$_LIB/ports"
	for i in $(seq 1 200); do
		p=$((20000 + (SRANDOM + i) % 12000))
		if grep -qx "$p" "$_LIB/ports" ||
			[ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] ||
			! _lib_bindable "$p"; then
			continue
		fi
		echo "$p" >>"$_LIB/ports"
		echo "$p"
		return 0
	done
	fail "free_port: no free port found"
}

psql_q()
{
	local sql=$1

	shift
	psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -c "$sql" "$@"
}

db_url()
{
	printf 'postgresql://%s@%s:%s/%s\n' "$PGUSER" "$PGHOST" "$PGPORT" "$1"
}

new_db()
{
	local name=$1

	[ -n "$name" ] || fail "new_db: no name"
	psql_q "CREATE DATABASE \"${name//\"/\"\"}\"" >/dev/null ||
		fail "new_db: cannot create database '$name'"
	db_url "$name"
}

migrate_db()
{
	local url=${1:-$DATABASE_URL} rc=0

	[ -x "$TANDEM_BIN/migrate" ] || fail "no $TANDEM_BIN/migrate"
	DATABASE_URL=$url \
		MIGRATIONS_DIR=${MIGRATIONS_DIR:-$TANDEM_ROOT/migrations} \
		"$TANDEM_BIN/migrate" >&2 || rc=$?
	[ "$rc" -eq 0 ] || fail "migrate exited with $rc on $url"
}

_lib_tail_log()
{
	if [ -f "$1" ]; then
		printf -- '--- last %s lines of %s ---\n' "$2" "$1" >&2
		tail -n "$2" "$1" >&2
		printf -- '---\n' >&2
	fi
}

start_service()
{
	local prefix=$1 bin=$2 kv port="" log pid wrapper i code end

	shift 2
	[[ $prefix =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] ||
		fail "start_service: bad prefix '$prefix'"
	[ -x "$TANDEM_BIN/$bin" ] || fail "start_service: no $TANDEM_BIN/$bin"
	for kv in "$@"; do
		case $kv in
		PORT=*) port=${kv#PORT=} ;;
		[A-Za-z_]*=*) ;;
		*) fail "start_service: '$kv' is not VAR=VALUE" ;;
		esac
	done
	[ -n "$port" ] || port=$(free_port)
	log=$TEST_TMP/$prefix.log
	# A second start under the same prefix keeps the first one's log.
	if [ -f "$log" ]; then
		mv -f "$log" "$log.prev"
	fi
	rm -f "$_LIB/start.$prefix"
	# The wrapper records the service's PID, then its exit status as wait
	# reports it, so stop_pid works from any shell, subshells included.
	(
		env PORT="$port" DATABASE_URL="${DATABASE_URL:-}" "$@" \
			"$TANDEM_BIN/$bin" &
		svc=$!
		echo "$svc" >"$_LIB/start.$prefix"
		st=0
		wait "$svc" || st=$?
		echo "$st" >"$_LIB/status.$svc.tmp"
		mv "$_LIB/status.$svc.tmp" "$_LIB/status.$svc"
	) >"$log" 2>&1 &
	wrapper=$!
	for i in $(seq 1 100); do
		[ ! -s "$_LIB/start.$prefix" ] || break
		sleep 0.05
	done
	pid=$(cat "$_LIB/start.$prefix" 2>/dev/null) ||
		fail "start_service: $bin did not start"
	track_pid "$pid"
	echo "$wrapper" >"$_LIB/wrapper.$pid"
	echo "$prefix $log" >>"$_LIB/services"
	declare -g "${prefix}_PID=$pid"
	declare -g "${prefix}_PORT=$port"
	declare -g "${prefix}_URL=http://127.0.0.1:$port"

	end=$(($(_lib_now_ms) + ${START_TIMEOUT:-15} * 1000))
	while :; do
		if [ -f "$_LIB/status.$pid" ]; then
			_lib_tail_log "$log" 30
			fail "$bin ($prefix) exited with status" \
				"$(cat "$_LIB/status.$pid") before answering" \
				"GET /health"
		fi
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
			"http://127.0.0.1:$port/health" 2>/dev/null) || true
		[ "$code" != 200 ] || break
		if [ "$(_lib_now_ms)" -ge "$end" ]; then
			_lib_tail_log "$log" 30
			fail "$bin ($prefix) did not answer GET /health with 200" \
				"within ${START_TIMEOUT:-15} s (last: $code)"
		fi
		sleep 0.1
	done
}

stop_pid()
{
	local pid=$1 sig=${2:-TERM} i state st ppid=

	case $pid in
	'' | *[!0-9]*) fail "stop_pid: bad pid '$pid'" ;;
	esac
	if [ ! -f "$_LIB/wrapper.$pid" ]; then
		ppid=$(_lib_ppid "$pid")
	fi
	kill -s "$sig" "$pid" 2>/dev/null || true
	if [ -f "$_LIB/wrapper.$pid" ]; then
		# Started by start_service: its wrapper writes the status.
		for i in $(seq 1 200); do
			[ ! -f "$_LIB/status.$pid" ] || break
			sleep 0.1
		done
		if [ ! -f "$_LIB/status.$pid" ]; then
			kill -KILL "$pid" 2>/dev/null || true
			fail "stop_pid: $pid did not exit within 20 s of SIG$sig"
		fi
		st=$(cat "$_LIB/status.$pid")
	else
		for i in $(seq 1 200); do
			state=$(_lib_state "$pid")
			if [ -z "$state" ] || [ "$state" = Z ]; then
				break
			fi
			sleep 0.1
		done
		state=$(_lib_state "$pid")
		if [ -n "$state" ] && [ "$state" != Z ]; then
			kill -KILL "$pid" 2>/dev/null || true
			fail "stop_pid: $pid did not exit within 20 s of SIG$sig"
		fi
		# Only the parent can collect the status: unknown ("")
		# elsewhere, e.g. in $(...).
		st=
		if [ "$ppid" = "$BASHPID" ] || [ -z "$ppid" ]; then
			st=0
			wait "$pid" 2>/dev/null || st=$?
			case $st in
			127 | -*) [ "$ppid" = "$BASHPID" ] || st= ;;
			esac
		fi
	fi
	echo "$pid" >>"$_LIB/stopped"
	STOP_STATUS=$st
	echo "$st"
}

# Keep only the last header block (after a 100 Continue or a redirect).
_lib_last_headers()
{
	local line out=""

	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		if [[ $line == HTTP/* ]]; then
			out=$line
		elif [ -n "$line" ]; then
			out+=$'\n'$line
		fi
	done <"$1"
	printf '%s' "$out"
}

http()
{
	local method=$1 url=$2 body=${3-} a rc=0 ctype=1
	local args=(-sS --max-time 30 -o "$_LIB/http.body" -D "$_LIB/http.headers"
		-w '%{http_code}')

	shift 2
	[ $# -eq 0 ] || shift
	if [ "$method" = HEAD ]; then
		args+=(--head)
	else
		args+=(-X "$method")
	fi
	if [ -n "$body" ]; then
		printf '%s' "$body" >"$_LIB/http.request"
		args+=(--data-binary "@$_LIB/http.request")
		for a in "$@"; do
			if [[ ${a,,} =~ ^(-h)?[[:space:]]*content-type: ]]; then
				ctype=0
			fi
		done
		[ "$ctype" -eq 0 ] || args+=(-H 'Content-Type: application/json')
	fi
	: >"$_LIB/http.body"
	: >"$_LIB/http.headers"
	if [ -n "${AS:-}" ]; then
		# -q first: not the .curlrc, so not ADMIN_TOKEN
		args=(-q "${args[@]}")
		[ "$AS" = none ] || args+=(-H "Authorization: Bearer $AS")
	fi
	HTTP_STATUS=$(curl "${args[@]}" "$@" --url "$url") || rc=$?
	HTTP_BODY=
	# With --head curl writes the headers to -o as well.
	if [ "$method" != HEAD ]; then
		HTTP_BODY=$(cat "$_LIB/http.body")
	fi
	HTTP_HEADERS=$(_lib_last_headers "$_LIB/http.headers")
	if [ "$rc" -ne 0 ]; then
		HTTP_STATUS=000
		if [ "${HTTP_ALLOW_FAIL:-0}" = 1 ]; then
			return "$rc"
		fi
		fail "http $method $url: curl failed with exit code $rc"
	fi
}

has_header()
{
	local name=${1,,} line key

	while IFS= read -r line; do
		[[ $line == *:* ]] || continue
		key=${line%%:*}
		[ "${key,,}" != "$name" ] || return 0
	done <<<"$HTTP_HEADERS"
	return 1
}

header()
{
	local name=${1,,} line key v

	while IFS= read -r line; do
		[[ $line == *:* ]] || continue
		key=${line%%:*}
		if [ "${key,,}" = "$name" ]; then
			v=${line#*:}
			v=${v#"${v%%[![:space:]]*}"}
			v=${v%"${v##*[![:space:]]}"}
			printf '%s\n' "$v"
			return 0
		fi
	done <<<"$HTTP_HEADERS"
	return 0
}

expect_status()
{
	[ "$HTTP_STATUS" = "$1" ] ||
		fail "expected HTTP status $1, got $HTTP_STATUS;" \
			"body: $(_lib_short "$HTTP_BODY")"
}

expect_json()
{
	local filter=$1 want=$2 got

	got=$(jq -r "$filter" <<<"$HTTP_BODY" 2>&1) ||
		fail "jq '$filter' failed ($got) on body: $(_lib_short "$HTTP_BODY")"
	[ "$got" = "$want" ] ||
		fail "expected $filter = '$want', got '$got';" \
			"body: $(_lib_short "$HTTP_BODY")"
}

expect_header()
{
	local got

	has_header "$1" ||
		fail "expected header $1: $2, but it is missing; headers:" \
			"$HTTP_HEADERS"
	got=$(header "$1")
	[ "$got" = "$2" ] || fail "expected header $1: '$2', got '$got'"
}

expect_eq()
{
	[ "$1" = "$2" ] || fail "${3:-values differ}: expected '$2', got '$1'"
}

# expect_text TEXT: the body holds TEXT as it is (a number as its digits)
expect_text()
{
	[[ $HTTP_BODY == *"$1"* ]] ||
		fail "expected '$1' in the body: $(_lib_short "$HTTP_BODY")"
}

# cmd PATH BODY: POST to the command service ($CMD_URL), 201 expected;
# TOKEN becomes the answer's position token.
cmd()
{
	http POST "$CMD_URL$1" "$2"
	expect_status 201
	TOKEN=$(jq -r .position <<<"$HTTP_BODY")
}

# ryw PATH: GET from the query service ($QRY_URL) reading at least
# TOKEN (X-Min-Position, waiting up to 5 s); 200 expected.
ryw()
{
	http GET "$QRY_URL$1" "" -H "X-Min-Position: $TOKEN" -H 'X-Wait-Ms: 5000'
	expect_status 200
}

wait_for()
{
	local secs=$1 end out=""

	shift
	case $secs in
	'' | *[!0-9]*) fail "wait_for: bad number of seconds '$secs'" ;;
	esac
	end=$(($(_lib_now_ms) + secs * 1000))
	while :; do
		if out=$( ("$@") 2>&1); then
			return 0
		fi
		if [ "$(_lib_now_ms)" -ge "$end" ]; then
			printf '%s\n' "$out" | tail -n 10 >&2
			fail "timed out after $secs s waiting for: $*"
		fi
		sleep 0.1
	done
}

# Sets OWN_* from the export lines of scripts/pg without touching the
# test's own PG* and DATABASE_URL.
_lib_own_env()
{
	local PGHOST PGPORT PGUSER PGDATABASE DATABASE_URL TANDEM_PG_DIR
	local TANDEM_PG_PID TANDEM_PG_SOCKET

	eval "$1"
	OWN_DATABASE_URL=$DATABASE_URL
	OWN_PGHOST=$PGHOST
	OWN_PGPORT=$PGPORT
	OWN_PG_PID=$TANDEM_PG_PID
	OWN_PG_DIR=$TANDEM_PG_DIR
	OWN_PG_SOCKET=$TANDEM_PG_SOCKET
	_LIB_OWN_PORTS[$TANDEM_PG_DIR]=$PGPORT
}

_lib_own_dir()
{
	realpath -m -- "${1:-$TEST_TMP/own-pg}"
}

# shellcheck disable=SC2120 # DIR is optional
pg_own_start()
{
	local dir out port

	dir=$(_lib_own_dir "${1:-}")
	port=${2:-${_LIB_OWN_PORTS[$dir]:-}}
	grep -qxF -- "$dir" "$_LIB/clusters" || echo "$dir" >>"$_LIB/clusters"
	out=$("$TANDEM_ROOT/scripts/pg" start "$dir" ${port:+"$port"}) ||
		fail "pg_own_start: cannot start a cluster in $dir"
	_lib_own_env "$out"
}

# pg_own_standby PRIMARY DIR [sync]: a hot standby (scripts/pg standby) of
# the running own cluster in PRIMARY, in DIR; sets OWN_* to the standby's
# (save the primary's first). Destroyed at exit like the others.
pg_own_standby()
{
	local dir out

	dir=$(_lib_own_dir "$2")
	grep -qxF -- "$dir" "$_LIB/clusters" || echo "$dir" >>"$_LIB/clusters"
	out=$("$TANDEM_ROOT/scripts/pg" standby "$(_lib_own_dir "$1")" "$dir" \
		${3:+"$3"}) || fail "pg_own_standby: no standby of $1 in $dir"
	_lib_own_env "$out"
}

# pg_own_failover_pair PRIMARY STANDBY: an own cluster in PRIMARY with a
# synchronous standby in STANDBY; sets P_URL, P_PID, P_PORT, S_URL,
# S_PORT, and FAILOVER_URL: one libpq multi-host URL of both with
# target_session_attrs=read-write (what follows a promotion). OWN_* are
# the standby's afterwards.
pg_own_failover_pair()
{
	local db user

	pg_own_start "$1"
	P_URL=$OWN_DATABASE_URL
	P_PID=$OWN_PG_PID
	P_PORT=$OWN_PGPORT
	pg_own_standby "$1" "$2" sync
	S_URL=$OWN_DATABASE_URL
	S_PORT=$OWN_PGPORT
	db=${P_URL##*/}
	user=${P_URL#postgresql://}
	user=${user%%@*}
	FAILOVER_URL="postgresql://$user@127.0.0.1:$P_PORT,127.0.0.1:$S_PORT/$db"
	FAILOVER_URL+="?target_session_attrs=read-write&connect_timeout=2"
}

# shellcheck disable=SC2120 # DIR is optional
pg_own_stop()
{
	local dir

	dir=$(_lib_own_dir "${1:-}")
	"$TANDEM_ROOT/scripts/pg" stop "$dir" >&2 ||
		fail "pg_own_stop: cannot stop the cluster in $dir"
}

proxy_own_start()
{
	local proxy=$TANDEM_BUILD/tests/tcp_proxy db user

	[ -x "$proxy" ] || fail "no $proxy: build it with make"
	if [ -z "${PX_PORT:-}" ]; then
		db=${OWN_DATABASE_URL##*/}
		user=${OWN_DATABASE_URL#postgresql://}
		user=${user%%@*}
		PX_PORT=$(free_port)
		PX_URL="postgresql://$user@127.0.0.1:$PX_PORT/$db"
	fi
	# a process group of its own: proxy_own_cut kills its connections too
	setsid "$proxy" "$PX_PORT" "$OWN_PGPORT" >"$TEST_TMP/proxy.out" 2>&1 &
	PX_PID=$!
	track_pid "$PX_PID"
	wait_for 10 grep -qx listening "$TEST_TMP/proxy.out"
}

proxy_own_cut()
{
	kill -KILL -- "-$PX_PID"
	wait_for 10 eval "! kill -0 $PX_PID 2>/dev/null"
}

# shellcheck disable=SC2120 # DIR is optional
pg_own_restart()
{
	local dir out

	dir=$(_lib_own_dir "${1:-}")
	out=$("$TANDEM_ROOT/scripts/pg" restart "$dir") ||
		fail "pg_own_restart: cannot restart the cluster in $dir"
	_lib_own_env "$out"
}

_lib_cleanup()
{
	local rc=$? c pid st prefix log dir

	set +e
	trap - ERR
	# A second signal must not cut the clean-up short.
	trap '' INT TERM
	_LIB_CLEANING=1
	for c in "${_LIB_AT_EXIT[@]}"; do
		eval "$c"
	done
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		while read -r prefix log; do
			_lib_tail_log "$log" 10
		done <"$_LIB/services"
	fi
	# TERM first, so that a process with children of its own (nginx's
	# master: its workers outlive a SIGKILLed master) stops them; KILL
	# what is left after 3 s.
	local live=() i
	while read -r pid st; do
		[ -n "$pid" ] || continue
		grep -qx "$pid" "$_LIB/stopped" 2>/dev/null && continue
		[ ! -f "$_LIB/status.$pid" ] || continue
		if [ -n "$st" ] && [ "$(_lib_starttime "$pid")" = "$st" ]; then
			kill -TERM "$pid" 2>/dev/null
			live+=("$pid $st")
		fi
	done <"$_LIB/pids"
	for i in $(seq 1 30); do
		local still=()
		for c in "${live[@]}"; do
			read -r pid st <<<"$c"
			[ "$(_lib_starttime "$pid")" = "$st" ] &&
				[ "$(_lib_state "$pid")" != Z ] && still+=("$c")
		done
		live=("${still[@]}")
		[ "${#live[@]}" -gt 0 ] || break
		sleep 0.1
	done
	for c in "${live[@]}"; do
		read -r pid st <<<"$c"
		kill -KILL "$pid" 2>/dev/null
	done
	while read -r dir; do
		[ -z "$dir" ] || "$TANDEM_ROOT/scripts/pg" destroy "$dir" >&2
	done <"$_LIB/clusters"
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
		# Repeat the failure below the service logs printed above.
		if [ -f "$_LIB/failmsg" ] && [ -s "$_LIB/services" ]; then
			printf 'FAIL: %s\n' "$(cat "$_LIB/failmsg")" >&2
		fi
		if [ -n "$_LIB_ERR_CMD" ]; then
			printf 'FAIL: exit %s at line %s: %s\n' "$rc" \
				"$_LIB_ERR_LINE" "$_LIB_ERR_CMD" >&2
		fi
	fi
	if [ "$_LIB_OWN_TMP" -eq 1 ]; then
		rm -rf -- "$TEST_TMP"
	fi
	exit "$rc"
}

trap '_LIB_ERR_CMD=$BASH_COMMAND _LIB_ERR_LINE=$LINENO' ERR
trap _lib_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ -n "${DATABASE_URL:-}" ] ||
	fail "DATABASE_URL is not set: run tests with scripts/run-tests" \
		"(make integration TESTS=tNNNN)"
