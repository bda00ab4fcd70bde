#!/usr/bin/env bash
# t0510-topology.sh - the docker compose shape without containers, on the
# test's fresh database:
#   1. three bin/migrate at once: all exit 0, each migration applied once;
#   2. two command-service and two query-service replicas behind the
#      gateway (scripts/gateway with deploy/gateway/routes.conf);
#   3. a scripted client session through the gateway only: open, deposit,
#      transfer, a replayed Idempotency-Key, read-your-writes GETs;
#   4. CLIENTS concurrent clients through the gateway while one command
#      replica and the projecting query replica are killed with SIGKILL.
#      Every POST carries an Idempotency-Key (also sent as
#      X-Correlation-Id, so its events can be found in the log) and is
#      retried with the same key on 502/503/504, as a client of the gateway
#      must; every request ends 201/200 within MAX_TRIES tries; nothing is
#      applied twice (events per key); money is conserved; each client's
#      read-your-writes GETs see its own last write, after the kills too;
#      every view equals the fold of the log, and GET /accounts/{id}
#      through the gateway equals the SQL fold for every account.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"

CLIENTS=4
ACCS=3		# accounts of each client, no other client touches them
STEPS=120	# commands of each client after its opens
MAX_TRIES=40	# tries of one request answered 502/503/504
SESSION_SECS=40	# the whole concurrent session, kills included

GW_DIR=$TEST_TMP/gw
CLIENT=$TANDEM_BUILD/tests/topo_client
[ -x "$CLIENT" ] || fail "no $CLIENT: build it with make"
MIG=$TANDEM_ROOT/migrations

# gone PID: exited (a zombie counts)
gone()
{
	local s

	s=$(_lib_state "$1")
	[ -z "$s" ] || [ "$s" = Z ]
}

# reap SECONDS PID...: wait for children of this shell, at most SECONDS in
# all; their exit statuses in REAPED (in order)
REAPED=()
reap()
{
	local end=$(($(_lib_now_ms) + $1 * 1000)) pid st

	shift
	for pid in "$@"; do
		while ! gone "$pid"; do
			[ "$(_lib_now_ms)" -lt "$end" ] ||
				fail "process $pid still runs after the deadline"
			sleep 0.05
		done
	done
	REAPED=()
	for pid in "$@"; do
		st=0
		wait "$pid" || st=$?
		REAPED+=("$st")
	done
}

# ---- 1. three bin/migrate at once ----

files=$(for f in "$MIG"/*.sql; do basename "$f"; done |
	grep -E '^[0-9]{4}_[a-z0-9_]+\.sql$' | LC_ALL=C sort)
nfiles=$(grep -c . <<<"$files")
[ "$nfiles" -ge 1 ] || fail "no migrations in $MIG"
expect_eq "$(psql_q "SELECT to_regclass('schema_migrations') IS NULL
	AND to_regclass('events') IS NULL")" t "the database starts empty"

say "three bin/migrate started at the same moment ($nfiles files)"
# each sleeps until the same instant, then execs migrate
start_at=$(($(_lib_now_ms) + 400))
MPIDS=()
for i in 1 2 3; do
	(
		now=$(_lib_now_ms)
		d=$((start_at - now))
		[ "$d" -le 0 ] || sleep "$((d / 1000)).$(printf '%03d' $((d % 1000)))"
		MIGRATIONS_DIR=$MIG exec "$TANDEM_BIN/migrate"
	) >"$TEST_TMP/migrate$i.out" 2>"$TEST_TMP/migrate$i.log" &
	MPIDS+=("$!")
	track_pid "$!"
done
reap 30 "${MPIDS[@]}"
for i in 1 2 3; do
	[ "${REAPED[$((i - 1))]}" = 0 ] ||
		fail "migrate $i exited with ${REAPED[$((i - 1))]}:" \
			"$(tail -n 5 "$TEST_TMP/migrate$i.log")"
	grep -q '"event":"migrate_done"' "$TEST_TMP/migrate$i.log" ||
		fail "migrate $i logged no migrate_done"
done
applied_logs=$(cat "$TEST_TMP"/migrate[123].log |
	grep '"event":"migration_applied"' |
	sed 's/.*"name":"\([^"]*\)".*/\1/' | LC_ALL=C sort)
expect_eq "$applied_logs" "$files" \
	"the migrations the three processes applied, together"
expect_eq "$(cat "$TEST_TMP"/migrate[123].log | grep '"event":"migrate_done"' |
	sed 's/.*"applied":\([0-9]*\).*/\1/' | awk '{s += $1} END {print s}')" \
	"$nfiles" "sum of the three migrate_done counts"
expect_eq "$(psql_q "SELECT name FROM schema_migrations ORDER BY name" |
	LC_ALL=C sort)" "$files" "schema_migrations"
expect_eq "$(psql_q "SELECT count(*), count(DISTINCT name)
	FROM schema_migrations")" "$nfiles|$nfiles" "schema_migrations rows"
status=$(MIGRATIONS_DIR=$MIG "$TANDEM_BIN/migrate" --status) ||
	fail "migrate --status exited non-zero"
expect_eq "$(awk '{print $1, $2}' <<<"$status")" \
	"$(sed 's/^/applied /' <<<"$files")" "migrate --status afterwards"

# ---- 2. the replicas and the gateway ----

say "two command and two query replicas"
for s in CMD1 CMD2; do
	start_service $s command-service DB_POOL_SIZE=4
done
for s in Q1 Q2; do
	start_service $s query-service POLL_INTERVAL_MS=50 \
		LEADER_RETRY_MS=200 PROJECTOR_BATCH=500
done

say "the gateway"
GW_PORT=$(free_port)
"$TANDEM_ROOT/scripts/gateway" conf "$GW_DIR" "$GW_PORT" \
	"127.0.0.1:$CMD1_PORT,127.0.0.1:$CMD2_PORT" \
	"127.0.0.1:$Q1_PORT,127.0.0.1:$Q2_PORT" ||
	fail "scripts/gateway conf failed"
"$TANDEM_ROOT/scripts/gateway" test "$GW_DIR" ||
	fail "scripts/gateway test: $(tail -n 5 "$GW_DIR/error.log" 2>/dev/null)"
"$TANDEM_ROOT/scripts/gateway" exec "$GW_DIR" 2>"$GW_DIR/stderr.log" &
GW_PID=$!
GW_UP=1
track_pid "$GW_PID"
# On a failure: the tail of the gateway's log, and SIGTERM for nginx before
# lib.sh's SIGKILL, which would leave its workers running (and answering).
gw_at_exit()
{
	local workers i

	[ -n "$GW_UP" ] || return 0
	tail -n 20 "$GW_DIR/error.log" >&2
	gone "$GW_PID" && return 0
	workers=$(ps -o pid= --ppid "$GW_PID" || true)
	kill -TERM "$GW_PID" 2>/dev/null
	for i in $(seq 1 50); do
		gone "$GW_PID" && return 0
		sleep 0.1
	done
	# shellcheck disable=SC2086 # one PID per word
	kill -KILL "$GW_PID" $workers 2>/dev/null
}
at_exit gw_at_exit
GW=http://127.0.0.1:$GW_PORT
wait_for 10 curl -fsS --max-time 2 -o /dev/null "$GW/health"

role()
{
	curl -sS --max-time 5 "$1/status" | jq -r .role
}
one_leader()
{
	case "$(role "$Q1_URL") $(role "$Q2_URL")" in
	"leader follower" | "follower leader") return 0 ;;
	esac
	return 1
}
wait_for 10 one_leader
for q in Q1 Q2; do
	eval "url=\$${q}_URL pid=\$${q}_PID"
	if [ "$(role "$url")" = leader ]; then
		expect_eq "$(psql_q "SELECT holder FROM projection_leader")" \
			"$(hostname):$pid" "projection_leader.holder"
		say "$q leads"
	fi
done

# ---- requests through the gateway ----

# call METHOD PATH [BODY [KEY [CURL ARGS...]]]: one request through the
# gateway, sent again (with the same Idempotency-Key) while the answer is
# 502, 503 or 504, at most MAX_TRIES times; no answer at all from the
# gateway fails. Sets C_STATUS, C_BODY, C_TRIES; files in $CALL_DIR, one
# line per retry in $CALL_DIR/retries.
call()
{
	local method=$1 path=$2 body=${3-} key=${4-} st rc
	local args=(-sS --max-time 15 -X "$method" -o "$CALL_DIR/body"
		-D "$CALL_DIR/headers" -w '%{http_code}')

	shift $(($# < 4 ? $# : 4))
	if [ -n "$body" ]; then
		args+=(-H 'Content-Type: application/json' --data-binary "$body")
	fi
	if [ -n "$key" ]; then
		args+=(-H "Idempotency-Key: $key" -H "X-Correlation-Id: $key")
	fi
	C_TRIES=0
	while :; do
		C_TRIES=$((C_TRIES + 1))
		: >"$CALL_DIR/body"
		: >"$CALL_DIR/headers"
		rc=0
		st=$(curl "${args[@]}" "$@" --url "$GW$path" \
			2>"$CALL_DIR/curl.err") || rc=$?
		[ "$rc" -eq 0 ] ||
			fail "$method $path: no answer from the gateway (curl" \
				"exit $rc: $(cat "$CALL_DIR/curl.err"))"
		case $st in
		502 | 503 | 504) ;;
		*) break ;;
		esac
		echo "$st $method $path" >>"$CALL_DIR/retries"
		[ "$C_TRIES" -lt "$MAX_TRIES" ] ||
			fail "$method $path: still $st after $C_TRIES tries:" \
				"$(cat "$CALL_DIR/body")"
		sleep 0.2
	done
	C_STATUS=$st
	C_BODY=$(cat "$CALL_DIR/body")
}

# c_expect STATUS WHAT
c_expect()
{
	[ "$C_STATUS" = "$1" ] ||
		fail "$2: expected $1, got $C_STATUS: $(_lib_short "$C_BODY")"
}

# jstr NAME / jnum NAME: a top-level string / integer field of C_BODY
jstr()
{
	[[ $C_BODY =~ \"$1\"[[:space:]]*:[[:space:]]*\"([^\"]*)\" ]] ||
		fail "no string '$1' in: $(_lib_short "$C_BODY")"
	printf '%s\n' "${BASH_REMATCH[1]}"
}
jnum()
{
	[[ $C_BODY =~ \"$1\"[[:space:]]*:[[:space:]]*(-?[0-9]+) ]] ||
		fail "no number '$1' in: $(_lib_short "$C_BODY")"
	printf '%s\n' "${BASH_REMATCH[1]}"
}

# c_header NAME: a header of the last answer
c_header()
{
	HTTP_HEADERS=$(_lib_last_headers "$CALL_DIR/headers")
	header "$1"
}

# post KIND KEY PATH BODY FROM TO AMOUNT: a POST that must be 201;
# logs "KIND KEY FROM TO AMOUNT" in $CALL_DIR/ops, sets TOKEN
post()
{
	call POST "$3" "$4" "$2"
	c_expect 201 "$1 $2 (POST $3 $4)"
	TOKEN=$(jstr position)
	if [ "$(c_header Idempotent-Replayed)" = true ]; then
		echo "$2" >>"$CALL_DIR/replayed"
	fi
	echo "$1 $2 $5 $6 $7" >>"$CALL_DIR/ops"
}

# ryw ID BALANCE VERSION: GET /accounts/ID with the last TOKEN must show
# BALANCE and VERSION
ryw()
{
	call GET "/accounts/$1" "" "" -H "X-Min-Position: $TOKEN" \
		-H 'X-Wait-Ms: 3000'
	c_expect 200 "read-your-writes GET /accounts/$1 after $TOKEN"
	[ "$(jnum balance) $(jnum version)" = "$2 $3" ] ||
		fail "read-your-writes GET /accounts/$1 after $TOKEN:" \
			"balance and version $(jnum balance) $(jnum version)," \
			"expected $2 $3"
}

# ---- 3. a scripted session ----

say "a scripted session through the gateway"
CALL_DIR=$TEST_TMP/main
mkdir -p "$CALL_DIR"
post open s-open-a /accounts '{"owner":"Ann","currency":"EUR"}' - - 0
A=$(jstr account_id)
expect_eq "$(jnum version)" 1 "version of a new account"
expect_eq "$(c_header Location)" "/accounts/$A" "Location of the new account"
first_body=$C_BODY
call POST /accounts '{"owner":"Ann","currency":"EUR"}' s-open-a
c_expect 201 "the open sent again with its key"
expect_eq "$(c_header Idempotent-Replayed)" true "Idempotent-Replayed"
expect_eq "$C_BODY" "$first_body" "the replayed answer"
post open s-open-b /accounts '{"owner":"Bob","currency":"EUR"}' - - 0
B=$(jstr account_id)
post deposit s-dep-a "/accounts/$A/deposits" \
	'{"amount":10000,"reference":"salary"}' "$A" - 10000
expect_eq "$(jnum balance)" 10000 "balance after the deposit"
post deposit s-dep-b "/accounts/$B/deposits" '{"amount":500}' "$B" - 500
post transfer s-tr "/transfers" \
	"{\"from\":\"$A\",\"to\":\"$B\",\"amount\":2500}" "$A" "$B" 2500
expect_eq "$(jnum from_version) $(jnum to_version)" "3 3" \
	"versions the transfer answered"
ryw "$B" 3000 3
expect_eq "$(c_header ETag)" '"3"' "ETag of the account"
[ -n "$(c_header X-Position)" ] || fail "no X-Position through the gateway"
ryw "$A" 7500 3
call GET "/accounts/$B/transactions" "" "" -H "X-Min-Position: $TOKEN" \
	-H 'X-Wait-Ms: 3000'
c_expect 200 "read-your-writes statement"
expect_eq "$(jq -c '[.items[] | [.kind, .amount, .balance_after]]' \
	<<<"$C_BODY")" '[["deposit",500,500],["transfer_in",2500,3000]]' \
	"the statement of $B"
call GET "/owners/Ann/accounts" "" "" -H "X-Min-Position: $TOKEN"
c_expect 200 "GET /owners/Ann/accounts"
expect_eq "$(jq -r '.items | length' <<<"$C_BODY")" 1 "Ann's accounts"

# ---- 4. concurrent clients, and the kills ----
#
# Each client (topo_client.c) has accounts of its own and checks every
# answer against its own bookkeeping; it retries 502/503/504 with the same
# Idempotency-Key and fails on anything else. CMD1 dies at 20 % of the
# commands, the projecting query replica at 40 %; once the other one leads,
# kills.done tells the clients to read their accounts one last time.

# progress: commands the clients have had answered
progress()
{
	cat "$TEST_TMP"/c*/ops 2>/dev/null | wc -l
}

# wait_progress N: until the clients have N commands answered
wait_progress()
{
	local i c

	for i in $(seq 1 300); do
		[ "$(progress)" -lt "$1" ] || return 0
		for c in "${CPIDS[@]}"; do
			gone "$c" || continue
			fail "a client ended before the kills:" \
				"$(cat "$TEST_TMP"/c*.err)"
		done
		sleep 0.1
	done
	fail "the clients did not reach $1 commands within 30 s" \
		"($(progress) done)"
}

TOTAL=$((CLIENTS * (ACCS + STEPS)))
say "$CLIENTS clients, $TOTAL commands in all, through the gateway"
t_session=$(_lib_now_ms)
CPIDS=()
for n in $(seq 1 "$CLIENTS"); do
	mkdir -p "$TEST_TMP/c$n"
	"$CLIENT" "$GW_PORT" "$n" "$ACCS" "$STEPS" "$TEST_TMP/c$n" \
		"$TEST_TMP/kills.done" 2>"$TEST_TMP/c$n.err" &
	CPIDS+=("$!")
	track_pid "$!"
done

wait_progress $((TOTAL / 5))
say "kill -9 of command replica CMD1 after $(progress) commands"
expect_eq "$(stop_pid "$CMD1_PID" KILL)" 137 "status of the killed CMD1"

wait_progress $((TOTAL * 2 / 5))
# the leader holds projection_leader; /status says so too (checked above)
case $(psql_q "SELECT holder FROM projection_leader") in
"$(hostname):$Q1_PID") L=Q1 F=Q2 ;;
"$(hostname):$Q2_PID") L=Q2 F=Q1 ;;
*) fail "neither Q1 nor Q2 holds projection_leader" ;;
esac
eval "L_PID=\$${L}_PID F_PID=\$${F}_PID F_URL=\$${F}_URL"
say "kill -9 of the projecting query replica $L after $(progress) commands"
expect_eq "$(stop_pid "$L_PID" KILL)" 137 "status of the killed $L"
took_over()
{
	[ "$(psql_q "SELECT holder FROM projection_leader")" = \
		"$(hostname):$F_PID" ] && [ "$(role "$F_URL")" = leader ]
}
wait_for 10 took_over
say "$F leads now"
touch "$TEST_TMP/kills.done"

reap "$SESSION_SECS" "${CPIDS[@]}"
for n in $(seq 1 "$CLIENTS"); do
	[ "${REAPED[$((n - 1))]}" = 0 ] ||
		fail "client $n exited with ${REAPED[$((n - 1))]}:" \
			"$(cat "$TEST_TMP/c$n.err")"
done
say "session done in $(($(_lib_now_ms) - t_session)) ms"

# ---- the figures and the checks ----

expect_eq "$(progress)" "$TOTAL" "commands the clients had answered"
cat "$TEST_TMP"/main/ops "$TEST_TMP"/c*/ops >"$TEST_TMP/ops"
touch "$TEST_TMP/main/retries" "$TEST_TMP/main/replayed"
cat "$TEST_TMP"/main/retries "$TEST_TMP"/c*/retries >"$TEST_TMP/retries"
cat "$TEST_TMP"/main/replayed "$TEST_TMP"/c*/replayed >"$TEST_TMP/replayed"
say "retries: $(wc -l <"$TEST_TMP/retries") ($(awk '{print $1, $2}' \
	"$TEST_TMP/retries" | sort | uniq -c |
	awk '{printf "%s%s %s: %s", (NR > 1 ? ", " : ""), $2, $3, $1}'));" \
	"answers replayed to a retried command: $(wc -l <"$TEST_TMP/replayed")"

say "nothing applied twice: the events of each Idempotency-Key"
# a transfer: TransferSent, TransferReceived and its own TransferMade
awk '{print $2 "|" ($1 == "transfer" ? 3 : 1)}' "$TEST_TMP/ops" |
	LC_ALL=C sort >"$TEST_TMP/keys.want"
psql_q "SELECT metadata->>'correlation_id' || '|' || count(*) FROM events
	GROUP BY metadata->>'correlation_id'" | LC_ALL=C sort \
	>"$TEST_TMP/keys.got"
diff -u "$TEST_TMP/keys.want" "$TEST_TMP/keys.got" >"$TEST_TMP/keys.diff" ||
	fail "events per Idempotency-Key differ from the commands answered:" \
		"$(head -n 20 "$TEST_TMP/keys.diff")"
n=$(grep -c . "$TEST_TMP/ops")
expect_eq "$(psql_q "SELECT count(*) FILTER (WHERE status = 201), count(*)
	FROM idempotency_keys")" "$n|$n" "stored answers of the commands"
expect_eq "$(psql_q "SELECT count(*) FROM events")" \
	"$(awk -F'|' '{s += $2} END {print s}' "$TEST_TMP/keys.want")" \
	"events in the log"

say "money is conserved"
want_sum=$(awk '$1 == "deposit" {s += $5} $1 == "withdrawal" {s -= $5}
	END {print s + 0}' "$TEST_TMP/ops")
expect_eq "$(psql_q "SELECT coalesce(sum(CASE
	WHEN event_type IN ('MoneyDeposited', 'TransferReceived')
		THEN (data->>'amount')::bigint
	WHEN event_type IN ('MoneyWithdrawn', 'TransferSent')
		THEN -(data->>'amount')::bigint END), 0) FROM events")" \
	"$want_sum" "the log's sum of balances (deposits - withdrawals)"
expect_eq "$(psql_q "SELECT
	(SELECT coalesce(sum((data->>'amount')::bigint), 0) FROM events
		WHERE event_type = 'TransferSent') -
	(SELECT coalesce(sum((data->>'amount')::bigint), 0) FROM events
		WHERE event_type = 'TransferReceived')")" 0 \
	"transfers sent minus received"
expect_eq "$(awk '{s += $2} END {print s}' "$TEST_TMP"/c*/final)" \
	"$(awk '$1 == "deposit" && $2 ~ /^c/ {s += $5}
		$1 == "withdrawal" && $2 ~ /^c/ {s -= $5} END {print s + 0}' \
		"$TEST_TMP/ops")" "the clients' balances against their deposits"

say "every view equals the fold of the log"
proj_fold_equal 30 "$DATABASE_URL"

say "GET /accounts/{id} through the gateway equals the fold, every account"
SNAP=$(proj_snapshot "$DATABASE_URL")
CALL_DIR=$TEST_TMP/main
: >"$TEST_TMP/accounts.json"
for id in $(psql_q "SELECT DISTINCT substr(stream_id, 9) FROM events
	WHERE stream_id LIKE 'account-%'"); do
	call GET "/accounts/$id" "" "" -H "X-Min-Position: $SNAP" \
		-H 'X-Wait-Ms: 5000'
	c_expect 200 "GET /accounts/$id"
	printf '%s\n' "$C_BODY" >>"$TEST_TMP/accounts.json"
done
jq -r '[.id, .owner, .currency, .balance, .overdraft_limit, .status,
	.version] | join("|")' "$TEST_TMP/accounts.json" >"$TEST_TMP/accounts.got"
LC_ALL=C sort -o "$TEST_TMP/accounts.got" "$TEST_TMP/accounts.got"
proj_psql "$DATABASE_URL" "$(proj_fold_sql accounts)" | LC_ALL=C sort \
	>"$TEST_TMP/accounts.fold"
expect_eq "$(wc -l <"$TEST_TMP/accounts.fold")" $((2 + CLIENTS * ACCS)) \
	"accounts in the fold"
diff -u "$TEST_TMP/accounts.fold" "$TEST_TMP/accounts.got" \
	>"$TEST_TMP/accounts.diff" ||
	fail "GET /accounts/{id} differs from the fold:" \
		"$(head -n 20 "$TEST_TMP/accounts.diff")"
# and the clients' own bookkeeping
sort "$TEST_TMP"/c*/final >"$TEST_TMP/final.want"
awk -F'|' '$2 ~ /^topo-/ {print $1, $4, $7}' "$TEST_TMP/accounts.got" |
	sort >"$TEST_TMP/final.got"
diff -u "$TEST_TMP/final.want" "$TEST_TMP/final.got" >"$TEST_TMP/final.diff" ||
	fail "balances and versions differ from the clients' own:" \
		"$(head -n 20 "$TEST_TMP/final.diff")"

say "the survivors stop cleanly"
for s in CMD2 $F; do
	eval "pid=\$${s}_PID"
	expect_eq "$(stop_pid "$pid")" 0 "exit status of $s"
done
workers=$(ps -o pid= --ppid "$GW_PID" || true)
[ -n "$workers" ] || fail "the gateway has no worker processes"
stop_pid "$GW_PID" >/dev/null
GW_UP=
expect_eq "$STOP_STATUS" 0 "exit status of the gateway"
for w in $workers; do
	gone "$w" || fail "nginx worker $w outlived its master"
done
