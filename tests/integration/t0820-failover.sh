#!/usr/bin/env bash
# t0820-failover.sh - writes that follow a failover (SPEC section 12,
# issue 15). A primary with a synchronous standby; the command service,
# the query service and bin/migrate get one multi-host DATABASE_URL that
# lists both, with target_session_attrs=read-write.
#
# 1. A primary turned read-only under the running services (every write
#    fails with 25006, and new sessions find no read-write host): the
#    commands answer 503 with Retry-After, never 500; once it takes
#    writes again, both services work again without a restart.
# 2. 16 keyed deposit clients; kill -9 of the primary's postmaster mid-load,
#    promotion of the standby, load goes on. Answers are 201, 503 with
#    Retry-After, or 504 outcome-unknown (each client then sends the same
#    key again); never 500. Every 201 is in the new primary's log, once;
#    a key never answered 201 is not in it. Both services answer again
#    without a restart, the views equal a fold of the new primary's log,
#    and bin/migrate with the same URL finds the schema current there.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/proj_lib.sh"

export MIGRATIONS_DIR=$TANDEM_ROOT/migrations
J='Content-Type: application/json'
OUT=$TEST_TMP/out
mkdir -p "$OUT"
NCLIENTS=16


pg_own_failover_pair "$TEST_TMP/prim" "$TEST_TMP/stby"
URL=$FAILOVER_URL

say "bin/migrate with the multi-host URL migrates the primary"
migrate_db "$URL"
expect_eq "$(proj_psql "$P_URL" "SELECT count(*) > 0 FROM schema_migrations")" t \
	"migrations on the primary"

start_service CMD command-service DATABASE_URL="$URL" \
	BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=4 DB_QUEUE_TIMEOUT_MS=30000
start_service QRY query-service DATABASE_URL="$URL" BIND_ADDRESS=127.0.0.1
cmd_pid=$CMD_PID
qry_pid=$QRY_PID

for c in $(seq "$NCLIENTS"); do
	http POST "$CMD_URL/accounts" "{\"owner\":\"fo $c\",\"currency\":\"EUR\"}"
	expect_status 201
	jq -r .account_id <<<"$HTTP_BODY" >"$OUT/acc.$c"
done
acc=$(cat "$OUT/acc.1")
# every pool session is open on the primary now
for i in 1 2 3 4 5 6 7 8; do
	http POST "$CMD_URL/accounts/$acc/deposits" '{"amount":1}'
	expect_status 201
done

say "a primary turned read-only: 503 with Retry-After, never 500"
proj_psql "$P_URL" "ALTER SYSTEM SET default_transaction_read_only = on"
proj_psql "$P_URL" "SELECT pg_reload_conf()" >/dev/null
wait_for 10 eval "[ \"\$(psql -X -A -t -d '$P_URL' \
	-c 'SHOW transaction_read_only')\" = on ]"
for i in 1 2 3 4 5 6 7 8; do
	http POST "$CMD_URL/accounts/$acc/deposits" '{"amount":1}'
	expect_status 503
	expect_header Retry-After 1
done
grep -q '"db_read_only"' "$TEST_TMP/CMD.log" ||
	fail "no db_read_only in the command service's log"
proj_psql "$P_URL" "ALTER SYSTEM RESET default_transaction_read_only"
proj_psql "$P_URL" "SELECT pg_reload_conf()" >/dev/null
wait_for 15 eval "[ \"\$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
	-X POST -H '$J' -d '{\"amount\":1}' \
	'$CMD_URL/accounts/$acc/deposits')\" = 201 ]"
http POST "$CMD_URL/accounts/$acc/deposits" '{"amount":1}'
expect_status 201
TOKEN=$(jq -r .position <<<"$HTTP_BODY")
ryw "/accounts/$acc"

# client C: deposits of 1 to its account, each with its own key (also its
# reference), until $OUT/stop exists (at most 3000 keys); a 503 or 504 is
# sent again with the same key (at most 60 times). One line per answer:
# "STATUS KEY RETRY_AFTER" ("-" when there is none).
client()
{
	local c=$1 acc i n st ra key

	acc=$(cat "$OUT/acc.$c")
	for i in $(seq 3000); do
		[ ! -e "$OUT/stop" ] || break
		key=fo-$c-$i
		for n in $(seq 60); do
			st=$(curl -s -o /dev/null -D "$OUT/h.$c" \
				-w '%{http_code}' --max-time 40 -X POST \
				-H "$J" -H "Idempotency-Key: $key" \
				-d "{\"amount\":1,\"reference\":\"$key\"}" \
				"$CMD_URL/accounts/$acc/deposits") || st=000
			ra=$(tr -d '\r' <"$OUT/h.$c" | awk -F': ' \
				'tolower($1) == "retry-after" { print $2 }')
			echo "$st $key ${ra:--}" >>"$OUT/answers.$c"
			case $st in
			503 | 504) sleep "0.$((RANDOM % 5 + 1))" ;;
			*) break ;;
			esac
		done
	done
}

say "$NCLIENTS keyed clients of deposits"
pids=()
for c in $(seq "$NCLIENTS"); do
	client "$c" &
	pids+=($!)
done
wait_for 60 eval "[ \"\$(cat '$OUT'/answers.* 2>/dev/null |
	awk '\$1 == 201' | wc -l)\" -ge 40 ]"

say "kill -9 of the primary's postmaster, promotion of the standby"
kill -KILL "$P_PID"
"$TANDEM_ROOT/scripts/pg" promote "$TEST_TMP/stby" ||
	fail "scripts/pg promote failed"
expect_eq "$(proj_psql "$S_URL" "SELECT pg_is_in_recovery()")" f "promoted"
n=$(cat "$OUT"/answers.* | awk '$1 == 201' | wc -l)
wait_for 120 eval "[ \"\$(cat '$OUT'/answers.* |
	awk '\$1 == 201' | wc -l)\" -ge $((n + 80)) ]"
touch "$OUT/stop"
wait "${pids[@]}"

cat "$OUT"/answers.* >"$OUT/answers"
say "answers: $(awk '{print $1}' "$OUT/answers" | sort | uniq -c | tr -s ' \n' ' ')"
bad=$(awk '$1 != 201 && $1 != 503 && $1 != 504' "$OUT/answers" | head -5)
[ -z "$bad" ] || fail "unexpected answers: $bad"
bad=$(awk '$1 == 503 && $3 !~ /^[1-9][0-9]*$/' "$OUT/answers" | head -5)
[ -z "$bad" ] || fail "503 without Retry-After: $bad"
awk '$1 == 503' "$OUT/answers" | grep -q . ||
	say "no 503 this run (the failover caught no command mid-flight)"

say "every 201 is in the new primary's log, once; no other key is"
proj_psql "$S_URL" "SELECT data->>'reference' FROM events
	WHERE event_type = 'MoneyDeposited' AND data->>'reference' LIKE 'fo-%'" |
	sort >"$OUT/logged"
awk '$1 == 201 { print $2 }' "$OUT/answers" | sort -u >"$OUT/ok"
awk '{ print $2 }' "$OUT/answers" | sort -u >"$OUT/sent"
comm -23 "$OUT/sent" "$OUT/ok" >"$OUT/never"
[ "$(wc -l <"$OUT/ok")" -gt 0 ] || fail "no deposit got through"
lost=$(comm -23 "$OUT/ok" "$OUT/logged" | head -5)
[ -z "$lost" ] || fail "answered 201, not in the new primary's log: $lost"
applied=$(comm -12 "$OUT/never" "$OUT/logged" | head -5)
[ -z "$applied" ] || fail "never answered 201, yet in the log: $applied"
expect_eq "$(sort -u "$OUT/logged" | wc -l)" "$(wc -l <"$OUT/logged")" \
	"no deposit stored twice"

say "both services answer again without a restart"
kill -0 "$cmd_pid" && kill -0 "$qry_pid" || fail "a service died"
expect_eq "$CMD_PID|$QRY_PID" "$cmd_pid|$qry_pid" "service PIDs"
http POST "$CMD_URL/accounts/$acc/deposits" '{"amount":1}'
expect_status 201
TOKEN=$(jq -r .position <<<"$HTTP_BODY")
ryw "/accounts/$acc"
expect_json .balance \
	"$(proj_psql "$S_URL" "SELECT (data->>'balance_after')::bigint FROM events
		WHERE stream_id = 'account-$acc'
		ORDER BY stream_version DESC LIMIT 1")"

say "the views equal a fold of the new primary's log"
proj_fold_equal 30 "$S_URL"

say "bin/migrate with the multi-host URL: the schema is current"
out=$(DATABASE_URL=$URL "$TANDEM_BIN/migrate" 2>&1) ||
	fail "migrate after the failover: $out"
[[ $out == *'"migrate_done"'*'"applied":0'* ]] ||
	fail "migrate after the failover applied something: $out"
out=$(DATABASE_URL=$URL "$TANDEM_BIN/migrate" --status 2>&1) ||
	fail "migrate --status after the failover: $out"
[[ $out != *pending* ]] || fail "pending migrations after the failover: $out"
say "ok"
