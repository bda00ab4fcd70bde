#!/usr/bin/env bash
# t0600-bench-client.sh - the benchmarks' load client (bench/tandem-bench)
# against real services, by its counts only (no timing is asserted):
# latency makes 50 + N deposits and reports N; feed reads every event of
# the log and its pages follow the route's `next`; lag answers ok == sent
# with no errors on open accounts, each read-your-writes round trip
# longer than its lag and than its POST (percentile by percentile) and
# within 20 s, deposits kept waiting for a busy connection in their queue
# times, and counts every deposit to an unknown account as an error
# (exit 1: none became visible); fold makes the same deposits with no
# GET of an account and returns only once the table views hold them all,
# and fails (exit 1) when none is answered 201; bad usage exits 2. And
# the bench's transfer load:
# bench/transfers.lua under wrk makes only good transfers, each appended,
# and bench/pgbench-transfer.sql appends per transaction the rows a real
# transfer does (same types, payload keys and sizes, one transaction,
# no conflict between clients).
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

BENCH=$TANDEM_BUILD/bench/tandem-bench
[ -x "$BENCH" ] || fail "no $BENCH"

migrate_db
start_service CMD command-service
start_service QRY query-service

say "three accounts"
: >"$TEST_TMP/accounts"
for o in Ann Bob Cid; do
	http POST "$CMD_URL/accounts" "{\"owner\":\"$o\",\"currency\":\"EUR\"}"
	expect_status 201
	jq -r .account_id <<<"$HTTP_BODY" >>"$TEST_TMP/accounts"
done
A=$(head -n 1 "$TEST_TMP/accounts")

say "latency: 50 warm-up deposits and 20 counted ones, on one account"
out=$("$BENCH" latency --command "$CMD_URL" --account "$A" --n 20)
expect_eq "$(jq -c 'keys' <<<"$out")" '["mean_us","n","p50_us","p99_us"]' \
	"latency keys"
expect_eq "$(jq .n <<<"$out")" 20 "latency n"
expect_eq "$(jq '.p50_us > 0 and .p99_us >= .p50_us and .mean_us > 0' \
	<<<"$out")" true "latency figures are ordered: $out"
expect_eq "$(psql_q "SELECT max(stream_version) FROM events
	WHERE stream_id = 'account-$A'")" 71 "version after 1 + 50 + 20 events"

say "feed: every event, page by page"
total=$(psql_q "SELECT count(*) FROM events")
for limit in 7 1000; do
	out=$("$BENCH" feed --query "$QRY_URL" --limit $limit)
	expect_eq "$(jq -c 'keys' <<<"$out")" \
		'["eps","events","pages","seconds"]' "feed keys"
	expect_eq "$(jq .events <<<"$out")" "$total" "feed events, limit $limit"
	# at most `limit` a page, and a last one that is empty
	expect_eq "$(jq ".pages >= (($total + $limit - 1) / $limit | floor) + 1" \
		<<<"$out")" true "feed pages, limit $limit: $out"
done

say "lag: every counted deposit becomes visible"
out=$("$BENCH" lag --command "$CMD_URL" --query "$QRY_URL" \
	--accounts "$TEST_TMP/accounts" --rate 20 --seconds 1 --conns 2)
expect_eq "$(jq -c 'keys' <<<"$out")" \
	'["errors","max_ms","ok","p50_ms","p90_ms","p99_ms","post_p50_ms","post_p99_ms","queue_p50_ms","queue_p99_ms","rate","ryw_max_ms","ryw_p50_ms","ryw_p90_ms","ryw_p99_ms","sent"]' \
	"lag keys"
expect_eq "$(jq '.sent >= 1 and .ok == .sent and .errors == 0' <<<"$out")" \
	true "lag counts: $out"
expect_eq "$(jq '.p50_ms <= .p90_ms and .p90_ms <= .p99_ms and
	.p99_ms <= .max_ms' <<<"$out")" true "lag percentiles ordered: $out"
# a round trip holds its deposit's lag and the POST itself (more than the
# microsecond the figures are rounded to): longer, percentile by percentile
expect_eq "$(jq '.ryw_p50_ms <= .ryw_p90_ms and .ryw_p90_ms <= .ryw_p99_ms and
	.ryw_p99_ms <= .ryw_max_ms and
	.ryw_p50_ms > .p50_ms and .ryw_p90_ms > .p90_ms and
	.ryw_p99_ms > .p99_ms and .ryw_max_ms > .max_ms and
	.ryw_max_ms < 20000' <<<"$out")" true "read-your-writes figures: $out"
# each round trip holds its own POST: at every percentile, no shorter
expect_eq "$(jq '.post_p50_ms > 0 and .post_p50_ms <= .post_p99_ms and
	.post_p50_ms <= .ryw_p50_ms and .post_p99_ms <= .ryw_p99_ms and
	.queue_p50_ms >= 0 and .queue_p50_ms <= .queue_p99_ms' \
	<<<"$out")" true "POST figures: $out"

say "lag: deposits that wait for a busy connection show in their queue times"
# one connection cannot keep up with a deposit due every 50 us: deposits
# wait their turn (and those still waiting at the end are not sent)
out=$("$BENCH" lag --command "$CMD_URL" --query "$QRY_URL" \
	--accounts "$TEST_TMP/accounts" --rate 20000 --seconds 0.5 --conns 1)
expect_eq "$(jq '.sent >= 1 and .ok == .sent and .errors == 0 and
	.rate < 18000' <<<"$out")" true "lag counts: $out"
expect_eq "$(jq '.queue_p99_ms > .post_p50_ms' <<<"$out")" true \
	"queue times of one busy connection: $out"

say "lag: deposits to an unknown account are errors"
echo 00000000-0000-4000-8000-000000000000 >"$TEST_TMP/unknown"
st=0
out=$("$BENCH" lag --command "$CMD_URL" --query "$QRY_URL" \
	--accounts "$TEST_TMP/unknown" --rate 20 --seconds 0.5 \
	2>"$TEST_TMP/lag.err") || st=$?
expect_eq "$st" 1 "exit status with nothing visible"
expect_eq "$(jq '.sent >= 1 and .ok == 0 and .errors == .sent and
	.p50_ms == null and .ryw_p99_ms == null' <<<"$out")" true "lag counts: $out"
grep -q 'answered 404' "$TEST_TMP/lag.err" ||
	fail "no 404 named on stderr: $(cat "$TEST_TMP/lag.err")"

# gets: GET /accounts/{id} the query service has answered so far
gets()
{
	http GET "$QRY_URL/metrics"
	expect_status 200
	sed -n 's|^http_request_duration_seconds_count{method="GET",route="/accounts/{id}"} ||p' \
		<<<"$HTTP_BODY"
}

# view_locked: a session holds view_accounts against writes (not reads)
view_locked()
{
	[ "$(psql_q "SELECT count(*) FROM pg_locks l JOIN pg_class c
		ON c.oid = l.relation WHERE c.relname = 'view_accounts'
		AND l.mode = 'ShareLock' AND l.granted")" = 1 ]
}

say "fold: deposits nobody reads, in every view when it returns"
pos=$(psql_q "SELECT max(global_position) FROM events")
sum0=$(psql_q "SELECT sum(balance) FROM view_accounts")
gets0=$(gets)
[ -n "$gets0" ] || fail "no GET /accounts/{id} count in /metrics"
# the projector cannot write the accounts view until 4 s after the lock,
# well after the deposits end (2 s): fold must wait for it to catch up
psql -X -q -d "$DATABASE_URL" -c 'BEGIN' \
	-c 'LOCK TABLE view_accounts IN SHARE MODE' -c 'SELECT pg_sleep(4)' \
	-c 'COMMIT' >"$TEST_TMP/locker.out" 2>&1 &
locker=$!
track_pid "$locker"
wait_for 10 view_locked
out=$("$BENCH" fold --command "$CMD_URL" --query "$QRY_URL" \
	--accounts "$TEST_TMP/accounts" --rate 40 --seconds 1 --conns 2)
wait "$locker" || fail "the locking session: $(cat "$TEST_TMP/locker.out")"
expect_eq "$(jq -c 'keys' <<<"$out")" \
	'["errors","fold_wait_ms","ok","post_p50_ms","post_p99_ms","queue_p50_ms","queue_p99_ms","rate","sent","status_polls"]' \
	"fold keys"
expect_eq "$(jq '.sent >= 1 and .ok == .sent and .errors == 0 and
	.post_p50_ms > 0 and .post_p50_ms <= .post_p99_ms and
	.fold_wait_ms > 0 and .status_polls > 1' <<<"$out")" true \
	"fold figures: $out"
expect_eq "$(gets)" "$gets0" "GET /accounts/{id} answered during fold"
# every deposit of 1 (the warm-up's too) is in the accounts table view
n=$(psql_q "SELECT count(*) FROM events WHERE global_position > $pos
	AND event_type = 'MoneyDeposited'")
expect_eq "$(jq --argjson n "$n" '$n >= .sent' <<<"$out")" true \
	"$n deposits appended for $out"
expect_eq "$(psql_q "SELECT sum(balance) - $sum0 FROM view_accounts")" "$n" \
	"the accounts view's balances grew by the deposits"

say "fold: deposits to an unknown account are errors"
st=0
out=$("$BENCH" fold --command "$CMD_URL" --query "$QRY_URL" \
	--accounts "$TEST_TMP/unknown" --rate 20 --seconds 0.5 \
	2>"$TEST_TMP/fold.err") || st=$?
expect_eq "$st" 1 "exit status with nothing answered 201"
expect_eq "$out" "" "no figures printed"
grep -q 'answered 404' "$TEST_TMP/fold.err" ||
	fail "no 404 named on stderr: $(cat "$TEST_TMP/fold.err")"
grep -q 'no deposit was answered 201' "$TEST_TMP/fold.err" ||
	fail "no reason on stderr: $(cat "$TEST_TMP/fold.err")"

say "transfers.lua: random transfers between different accounts, all good"
: >"$TEST_TMP/eur"
for o in Dee Eve Fay; do
	http POST "$CMD_URL/accounts" "{\"owner\":\"$o\",\"currency\":\"EUR\"}"
	expect_status 201
	id=$(jq -r .account_id <<<"$HTTP_BODY")
	echo "$id" >>"$TEST_TMP/eur"
	# 4 digits of balance_after, as bench/run's transfer accounts
	http POST "$CMD_URL/accounts/$id/deposits" '{"amount":5000}'
	expect_status 201
done
pos=$(psql_q "SELECT max(global_position) FROM events")
wrk -t1 -c2 -d1s -s "$TANDEM_ROOT/bench/transfers.lua" "$CMD_URL" \
	-- "$TEST_TMP/eur" >"$TEST_TMP/wrk.out" 2>&1 ||
	fail "wrk: $(tail -n 5 "$TEST_TMP/wrk.out")"
res=$(sed -n 's/^WRK_RESULT //p' "$TEST_TMP/wrk.out")
expect_eq "$(jq '.requests > 0 and .status == 0 and .connect == 0 and
	.read == 0 and .write == 0 and .timeout == 0' <<<"$res")" true \
	"wrk transfers: $res"
made=$(psql_q "SELECT count(*) FROM events WHERE global_position > $pos
	AND event_type = 'TransferMade'")
# wrk counts the answers it read; up to one a connection may be cut off
expect_eq "$(jq --argjson m "$made" '$m >= .requests and $m <= .requests + 2' \
	<<<"$res")" true "$made transfers appended for $res"
expect_eq "$(psql_q "SELECT count(*) FILTER (WHERE event_type = 'TransferMade'
	AND data->>'from_account_id' <> data->>'to_account_id'
	AND data->>'amount' = '10'), count(*)
	FROM events WHERE global_position > $pos")" "$made|$((made * 3))" \
	"only transfers of 10 between different accounts"
# money is conserved: the three accounts still hold 15,000 in all
expect_eq "$(psql_q "SELECT sum((e.data->>'balance_after')::bigint)
	FROM (SELECT DISTINCT ON (stream_id) data FROM events
		WHERE stream_id IN (SELECT 'account-' || id FROM
			unnest(string_to_array('$(paste -sd, "$TEST_TMP/eur")', ','))
			id) ORDER BY stream_id, stream_version DESC) e")" 15000 \
	"the transfer accounts' balances"

say "pgbench-transfer.sql: a real transfer's rows, one transaction each"

# shape TYPE CONDITION: "DATA_KEYS METADATA_KEYS DATA_BYTES" of the last
# event of TYPE whose position meets CONDITION
shape()
{
	psql_q "SELECT array_to_string(array(SELECT jsonb_object_keys(data)
		ORDER BY 1), ',') || ' ' || array_to_string(array(SELECT
		jsonb_object_keys(metadata) ORDER BY 1), ',') || ' ' ||
		octet_length(data::text) FROM events WHERE event_type = '$1'
		AND global_position $2 ORDER BY global_position DESC LIMIT 1"
}
PGBENCH=${PGBIN:-/usr/lib/postgresql/15/bin}/pgbench
pos=$(psql_q "SELECT max(global_position) FROM events")
"$PGBENCH" -n -M prepared -c 2 -j 1 -t 3 -D run=1 -D n=0 \
	-f "$TANDEM_ROOT/bench/pgbench-transfer.sql" "$DATABASE_URL" \
	>"$TEST_TMP/pgbench.out" 2>&1 ||
	fail "pgbench: $(tail -n 5 "$TEST_TMP/pgbench.out")"
expect_eq "$(psql_q "SELECT count(*), count(DISTINCT transaction_id),
	count(DISTINCT (stream_id, stream_version)),
	count(*) FILTER (WHERE stream_id LIKE 'account-%' AND
		stream_version BETWEEN 1 AND 3 AND octet_length(stream_id) = 44),
	count(*) FILTER (WHERE stream_id LIKE 'transfer-%' AND
		stream_version = 1 AND octet_length(stream_id) = 45)
	FROM events WHERE global_position > $pos")" "18|6|18|12|6" \
	"rows, transactions, distinct stream versions, account and transfer rows"
expect_eq "$(psql_q "SELECT count(*) FROM (SELECT transaction_id,
	array_agg(event_type ORDER BY event_type) t FROM events
	WHERE global_position > $pos GROUP BY 1) x
	WHERE t = '{TransferMade,TransferReceived,TransferSent}'")" 6 \
	"each transaction: TransferMade, TransferReceived, TransferSent"
for t in TransferSent TransferReceived TransferMade; do
	# the last of the bench rows and of the real transfers, side by side
	bench=$(shape "$t" "> $pos")
	real=$(shape "$t" "<= $pos")
	[ -n "$real" ] || fail "no real $t to compare with"
	expect_eq "${bench% *}" "${real% *}" "$t payload and metadata keys"
	d=$((${bench##* } - ${real##* }))
	[ "${d#-}" -le 8 ] ||
		fail "$t data: ${bench##* } bytes from pgbench, ${real##* } real"
done

say "usage errors exit 2"
for args in "" "bogus" "feed" "feed --query http://127.0.0.1" \
	"feed --query $QRY_URL --limit 0" "latency --command $CMD_URL --n 1" \
	"feed --query $QRY_URL --rate 1" \
	"fold --command $CMD_URL --query $QRY_URL --rate 1 --seconds 1" \
	"fold --command $CMD_URL --query $QRY_URL --accounts x --rate 1 --seconds 1 --qconns 2"; do
	st=0
	# shellcheck disable=SC2086 # split on purpose
	"$BENCH" $args >/dev/null 2>&1 || st=$?
	expect_eq "$st" 2 "exit status of 'tandem-bench $args'"
done
"$BENCH" --help | grep -q '^usage: tandem-bench lag' || fail "--help"
