#!/usr/bin/env bash
# t0440-read-db.sh - views on a second PostgreSQL cluster: bin/migrate on
# both, the command service writes events to the first, the query service
# tails them from there (DATABASE_URL) and projects into the second
# (READ_DATABASE_URL): the views appear there, equal to the fold of the
# first cluster's events, and their checkpoints cover its log; nothing is
# projected into the first. The same after a restart of the query
# service and after a rebuild.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"

migrate_db
pg_own_start
READ_URL=$OWN_DATABASE_URL
migrate_db "$READ_URL"
start_service CMD command-service DB_POOL_SIZE=8
start_service QRY query-service POLL_INTERVAL_MS=50 READ_DATABASE_URL="$READ_URL"

say "commands on the first cluster"
ACC=()
for i in 0 1 2 3 4 5; do
	http POST "$CMD_URL/accounts" "{\"owner\":\"two$((i % 2))\",\"currency\":\"EUR\"}"
	expect_status 201
	ACC+=("$(jq -r .account_id <<<"$HTTP_BODY")")
done
for i in $(seq 1 60); do
	a=${ACC[$((i % 6))]}
	b=${ACC[$(((i + 1) % 6))]}
	http POST "$CMD_URL/accounts/$a/deposits" "{\"amount\":$((i * 10))}"
	expect_status 201
	http POST "$CMD_URL/transfers" "{\"from\":\"$a\",\"to\":\"$b\",\"amount\":$i}"
	expect_status 201
done
last=$(jq -r .position <<<"$HTTP_BODY")
proj_seed "$DATABASE_URL" two 20 49

say "the views appear on the second cluster and equal the fold"
proj_fold_equal 30 "$DATABASE_URL" "$READ_URL"
wait_for 10 proj_covered "$READ_URL" "$last"
# every event committed so far (the checkpoints need not cover the
# snapshot: the projector commits no empty window)
wait_for 10 proj_holds "$READ_URL" "$(proj_snapshot "$DATABASE_URL")" \
	"$DATABASE_URL"
expect_eq "$(psql_q "SELECT (SELECT count(*) FROM view_accounts)
	+ (SELECT count(*) FROM view_statement) + (SELECT count(*) FROM view_daily)")" \
	0 "nothing projected into the first cluster"
expect_eq "$(psql_q "SELECT position FROM projection_checkpoints
	WHERE view = 'statement'")" "0:0:" "the first cluster's checkpoint unused"
expect_eq "$(proj_psql "$READ_URL" "SELECT count(*) FROM events")" 0 \
	"no events on the second cluster"
expect_eq "$(proj_psql "$READ_URL" "SELECT holder FROM projection_leader")" \
	"$(hostname):$QRY_PID" "leadership on the second cluster"
http GET "$QRY_URL/accounts/${ACC[0]}/transactions?limit=1000"
expect_status 200
expect_eq "$(jq '.items | length' <<<"$HTTP_BODY")" \
	"$(proj_psql "$READ_URL" "SELECT count(*) FROM view_statement
		WHERE account_id = '${ACC[0]}'")" "the statement served from there"

say "restart, more commands"
expect_eq "$(stop_pid "$QRY_PID")" 0 "exit status of QRY"
for i in $(seq 1 20); do
	http POST "$CMD_URL/accounts/${ACC[$((i % 6))]}/withdrawals" '{"amount":7}'
	expect_status 201
done
start_service QRY query-service POLL_INTERVAL_MS=50 READ_DATABASE_URL="$READ_URL"
proj_fold_equal 30 "$DATABASE_URL" "$READ_URL"

say "the second cluster goes away for a while; commands go on"
pg_own_stop
for i in $(seq 1 20); do
	http POST "$CMD_URL/accounts/${ACC[$((i % 6))]}/deposits" '{"amount":3}'
	expect_status 201
done
sleep 2
http GET "$QRY_URL/health"
expect_status 200
pg_own_start
[ "$OWN_DATABASE_URL" = "$READ_URL" ] || fail "the cluster moved"
proj_fold_equal 30 "$DATABASE_URL" "$READ_URL"
grep -q '"event":"db_connect_failed"\|"event":"projector_error"\|"event":"projector_follow_error"' \
	"$TEST_TMP/QRY.log" || fail "the outage left no trace in the log"

say "rebuild into the second cluster"
DATABASE_URL=$DATABASE_URL READ_DATABASE_URL=$READ_URL \
	"$TANDEM_BIN/query-service" rebuild 2>"$TEST_TMP/rebuild.log" ||
	fail "rebuild failed: $(tail -5 "$TEST_TMP/rebuild.log")"
http POST "$CMD_URL/accounts/${ACC[0]}/deposits" '{"amount":99}'
expect_status 201
proj_fold_equal 30 "$DATABASE_URL" "$READ_URL"
wait_for 10 proj_covered "$READ_URL" "$(jq -r .position <<<"$HTTP_BODY")"
expect_eq "$(psql_q "SELECT count(*) FROM view_statement")" 0 \
	"still nothing in the first cluster"

say "SIGTERM while the second cluster is away: a prompt exit"
pg_own_stop
sleep 1
t0=$(_lib_now_ms)
expect_eq "$(stop_pid "$QRY_PID")" 0 "exit status of QRY"
took=$(($(_lib_now_ms) - t0))
say "stopped in $took ms"
[ "$took" -lt 8000 ] || fail "stopping took $took ms"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
