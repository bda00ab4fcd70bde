#!/usr/bin/env bash
# t0600-bench-client.sh - the benchmarks' load client (bench/tandem-bench)
# against real services, by its counts only (no timing is asserted):
# latency makes 50 + N deposits and reports N; feed reads every event of
# the log and its pages follow the route's `next`; lag answers ok == sent
# with no errors on open accounts, each read-your-writes round trip
# longer than its lag (percentile by percentile) and within 20 s,
# and counts every deposit to an unknown account as an error (exit 1:
# none became visible); bad usage exits 2.
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
	'["errors","max_ms","ok","p50_ms","p90_ms","p99_ms","rate","ryw_max_ms","ryw_p50_ms","ryw_p90_ms","ryw_p99_ms","sent"]' \
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

say "usage errors exit 2"
for args in "" "bogus" "feed" "feed --query http://127.0.0.1" \
	"feed --query $QRY_URL --limit 0" "latency --command $CMD_URL --n 1" \
	"feed --query $QRY_URL --rate 1"; do
	st=0
	# shellcheck disable=SC2086 # split on purpose
	"$BENCH" $args >/dev/null 2>&1 || st=$?
	expect_eq "$st" 2 "exit status of 'tandem-bench $args'"
done
"$BENCH" --help | grep -q '^usage: tandem-bench lag' || fail "--help"
