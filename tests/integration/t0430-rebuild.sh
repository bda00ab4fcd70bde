#!/usr/bin/env bash
# t0430-rebuild.sh - `query-service rebuild [view]` (qry_rebuild.c):
#   1. with no writes going on, a reader loop GETs the daily stats, a
#      statement and the large transactions over HTTP while every view is
#      rebuilt and swapped in: each answer equals the one before the
#      rebuild (a half-built or missing table would show), none fails;
#   2. a rebuild of every view while commands keep coming, then a rebuild
#      of the statement alone (its checkpoint goes ahead of the others'
#      until the projector catches them up): afterwards the views equal
#      the fold, the checkpoints cover the log and agree, the tables keep
#      their index names and grants, no shadow is left;
#   3. an unknown view is refused.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"

NACC=12
migrate_db
start_service CMD command-service DB_POOL_SIZE=8 MAX_CONNECTIONS=256
start_service QRY query-service POLL_INTERVAL_MS=50

rebuild()
{
	"$TANDEM_BIN/query-service" rebuild "$@" 2>>"$TEST_TMP/rebuild.log"
}

say "seed 100,000 events in 5 transactions, plus commands"
for tag in a b c d e; do
	proj_seed "$DATABASE_URL" "$tag" 200 99
done
ACC=()
for i in $(seq 0 $((NACC - 1))); do
	http POST "$CMD_URL/accounts" "{\"owner\":\"rb$((i % 3))\",\"currency\":\"EUR\"}"
	expect_status 201
	ACC+=("$(jq -r .account_id <<<"$HTTP_BODY")")
	http POST "$CMD_URL/accounts/${ACC[$i]}/deposits" '{"amount":500000}'
	expect_status 201
done
proj_fold_equal 120 "$DATABASE_URL"

SEEDED=$(psql_q "SELECT substr(stream_id, 9) FROM events
	WHERE event_type = 'TransferSent' ORDER BY global_position LIMIT 1")
URLS=("$QRY_URL/stats/daily?limit=1000"
	"$QRY_URL/accounts/$SEEDED/transactions?limit=1000"
	"$QRY_URL/audit/large-transactions?min_amount=149&limit=1000")
for i in "${!URLS[@]}"; do
	http GET "${URLS[$i]}"
	expect_status 200
	jq -cS .items <<<"$HTTP_BODY" >"$TEST_TMP/want.$i"
	[ "$(jq length "$TEST_TMP/want.$i")" -gt 0 ] ||
		fail "nothing to read at ${URLS[$i]}"
done

say "1. rebuild every view under a reader loop"
READS=$TEST_TMP/reads
mkdir -p "$READS"
(
	n=0
	while [ ! -e "$TEST_TMP/stop-reading" ] && [ $n -lt 20000 ]; do
		for i in "${!URLS[@]}"; do
			n=$((n + 1))
			t=$(_lib_now_ms)
			code=$(curl -s --max-time 10 -o "$READS/$n.body" \
				-w '%{http_code}' "${URLS[$i]}") || code=000
			echo "$n $i $code $t $(_lib_now_ms)" >>"$READS/index"
		done
	done
) &
reader=$!
track_pid "$reader"
sleep 0.3
r0=$(_lib_now_ms)
rebuild || fail "rebuild failed: $(tail -5 "$TEST_TMP/rebuild.log")"
r1=$(_lib_now_ms)
sleep 0.3
touch "$TEST_TMP/stop-reading"
wait "$reader"
grep -q '"event":"rebuild_swapped"' "$TEST_TMP/rebuild.log" ||
	fail "no rebuild_swapped in the log"
say "rebuilt in $((r1 - r0)) ms:" \
	"$(grep -o '"event":"rebuild_done".*' "$TEST_TMP/rebuild.log" | tail -1)"
during=0
total=0
while read -r n i code t0 t1; do
	total=$((total + 1))
	[ "$code" = 200 ] || fail "read $n (${URLS[$i]}) answered $code:" \
		"$(head -c 500 "$READS/$n.body")"
	jq -cS .items "$READS/$n.body" >"$READS/$n.items" ||
		fail "read $n: not JSON: $(head -c 500 "$READS/$n.body")"
	cmp -s "$READS/$n.items" "$TEST_TMP/want.$i" ||
		fail "read $n of ${URLS[$i]} (at $t0 ms, rebuild $r0-$r1 ms)" \
			"differs from before the rebuild:" \
			"$(diff <(jq . "$TEST_TMP/want.$i") <(jq . "$READS/$n.items") | head -20)"
	if [ "$t1" -ge "$r0" ] && [ "$t0" -le "$r1" ]; then
		during=$((during + 1))
		touch "$READS/during.$i"
	fi
done <"$READS/index"
say "$total reads, $during of them during the rebuild, all complete and equal"
# each of the three URLs was read while the rebuild ran (how many times
# depends on the machine's load)
for i in "${!URLS[@]}"; do
	[ -e "$READS/during.$i" ] ||
		fail "no read of ${URLS[$i]} overlapped the rebuild ($during did)"
done
proj_fold_equal 10 "$DATABASE_URL"

# load NAME COUNT: deposits and transfers, 6 at a time, in the background
load()
{
	local conf=$TEST_TMP/$1.conf n a b

	: >"$conf"
	for n in $(seq 1 "$2"); do
		a=$((n % NACC))
		b=$(((a + 1 + n % (NACC - 1)) % NACC))
		[ "$n" -eq 1 ] || echo next >>"$conf"
		if [ $((n % 3)) -eq 0 ]; then
			printf 'url = "%s/transfers"\ndata = "{\\"from\\":\\"%s\\",\\"to\\":\\"%s\\",\\"amount\\":%d}"\n' \
				"$CMD_URL" "${ACC[$a]}" "${ACC[$b]}" $((n % 97 + 1))
		else
			printf 'url = "%s/accounts/%s/deposits"\ndata = "{\\"amount\\":%d}"\n' \
				"$CMD_URL" "${ACC[$a]}" $((n % 89 + 1))
		fi >>"$conf"
		printf 'header = "Content-Type: application/json"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' >>"$conf"
	done
	with_auth "$conf"
	curl -q -s --parallel --parallel-max 6 --max-time 120 --config "$conf" \
		>"$TEST_TMP/$1.codes" 2>"$TEST_TMP/$1.err" &
	LOAD_PID=$!
	track_pid "$LOAD_PID"
}
load_done()
{
	wait "$LOAD_PID" || fail "curl: $(tail -3 "$TEST_TMP/$1.err")"
	bad=$(grep -vx 201 "$TEST_TMP/$1.codes" | sort | uniq -c || true)
	[ -z "$bad" ] || fail "commands answered other than 201: $bad"
}

# caught_up TOKEN: every checkpoint holds every event of TOKEN, a snapshot
# taken once the load is done, and every view serves the same position.
# (Holds, not covers: the projector's own checkpoint commit is a
# transaction the next snapshot sees, and it commits no empty window after
# it; so a view rebuilt past the last event keeps the rebuild's checkpoint
# while the others keep theirs, all with the same events.)
caught_up()
{
	proj_holds "$DATABASE_URL" "$1" &&
		[ "$(curl -sS --max-time 5 "$QRY_URL/status" |
			jq '[.views[].position] | unique | length')" = 1 ]
}

say "2. rebuild every view while commands come in"
load during-all 600
sleep 0.5
rebuild || fail "rebuild failed: $(tail -5 "$TEST_TMP/rebuild.log")"
load_done during-all
proj_fold_equal 30 "$DATABASE_URL"
wait_for 15 caught_up "$(proj_snapshot "$DATABASE_URL")"

say "rebuild the statement alone while commands come in (small batches)"
# batches of 2 events: the projector reads the log after the swap in
# several batches and so finds the statement ahead of its read
expect_eq "$(stop_pid "$QRY_PID")" 0 "exit status of QRY"
start_service QRY query-service POLL_INTERVAL_MS=50 PROJECTOR_BATCH=2
load during-one 600
sleep 0.5
rebuild statement ||
	fail "rebuild failed: $(tail -5 "$TEST_TMP/rebuild.log")"
load_done during-one
proj_fold_equal 30 "$DATABASE_URL"
wait_for 15 caught_up "$(proj_snapshot "$DATABASE_URL")"
expect_eq "$(psql_q "SELECT count(*) FROM projection_checkpoints
	WHERE stopped_error IS NOT NULL")" 0 "no view stopped"

say "the tables keep their names, indexes and grants; no shadow is left"
expect_eq "$(psql_q "SELECT string_agg(relname, ',' ORDER BY relname)
	FROM pg_class WHERE relname LIKE 'view\\_%' AND relkind IN ('r', 'i')")" \
	"view_accounts,view_accounts_owner_account_id_idx,view_accounts_pkey,view_audit,view_audit_pkey,view_audit_sub_command_id_key,view_daily,view_daily_pkey,view_statement,view_statement_amount_position_idx,view_statement_pkey" \
	"tables and indexes"
expect_eq "$(psql_q "SELECT string_agg(conname, ',' ORDER BY conname)
	FROM pg_constraint WHERE conrelid IN ('view_accounts'::regclass,
	'view_statement'::regclass, 'view_daily'::regclass,
	'view_audit'::regclass)")" \
	"view_accounts_pkey,view_accounts_status_check,view_audit_pkey,view_audit_sub_command_id_key,view_daily_pkey,view_statement_kind_check,view_statement_pkey" \
	"constraints"
expect_eq "$(psql_q "SELECT bool_and(has_table_privilege('tandem_reader',
	c, 'SELECT')) FROM unnest(ARRAY['view_accounts', 'view_statement',
	'view_daily', 'view_audit']) c")" t "tandem_reader may read the views"
expect_eq "$(psql_q "SELECT count(*) FROM pg_class
	WHERE relname LIKE '%\\_rebuild%'")" 0 "no shadow left"
grep -q '"event":"projector_view_ahead","view":"statement"' \
	"$TEST_TMP/QRY.log" ||
	fail "the projector never found the rebuilt statement ahead"

say "3. an unknown view"
rc=0
rebuild nosuchview || rc=$?
[ "$rc" -ne 0 ] || fail "rebuild of an unknown view succeeded"
grep -q "nosuchview" "$TEST_TMP/rebuild.log" ||
	fail "the error does not name the view: $(tail -2 "$TEST_TMP/rebuild.log")"

expect_eq "$(stop_pid "$QRY_PID")" 0 "exit status of QRY"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
