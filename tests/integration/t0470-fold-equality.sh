#!/usr/bin/env bash
# t0470-fold-equality.sh - after 2,000 random commands sent concurrently
# through the command service (opens, deposits, withdrawals, transfers,
# closes, refusals among them), every view the query service serves
# equals an independent fold of the events table written in SQL: each
# account (GET /accounts/{id}, the in-memory view), each statement (GET
# /accounts/{id}/transactions, paged), each owner's accounts and totals
# (GET /owners/{owner}/accounts), the daily stats (GET /stats/daily,
# paged) and the large transactions (GET /audit/large-transactions,
# paged). Also: every statement's balance_after is the running sum of its
# amounts; and a restarted query service, whose in-memory view starts
# from the table and its checkpoint, still equals the fold.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

COMMANDS=${T0470_COMMANDS:-2000}
NACC=40
SEED=${T0470_SEED:-$RANDOM}
RANDOM=$SEED
say "seed $SEED (T0470_SEED=$SEED to repeat)"

migrate_db
start_service CMD command-service DB_POOL_SIZE=8 MAX_CONNECTIONS=256
start_service QRY query-service POLL_INTERVAL_MS=50 PROJECTOR_BATCH=97

OWNERS=(Ann Bob "Zoë O'Brien" Ren Kai Mia)
TS="'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"

say "open $NACC accounts for ${#OWNERS[@]} owners in EUR and USD"
ACC=()
for i in $(seq 0 $((NACC - 1))); do
	cur=EUR
	[ $((i % 2)) -eq 0 ] || cur=USD
	owner=${OWNERS[$((i % ${#OWNERS[@]}))]}
	http POST "$CMD_URL/accounts" \
		"$(jq -cn --arg o "$owner" --arg c "$cur" --argjson l $((i % 3 * 100)) \
			'{owner: $o, currency: $c, overdraft_limit: $l}')"
	expect_status 201
	ACC+=("$(jq -r .account_id <<<"$HTTP_BODY")")
done

say "$((COMMANDS - NACC)) random commands, 16 at a time"
conf=$TEST_TMP/commands.conf
: >"$conf"
for n in $(seq 1 $((COMMANDS - NACC))); do
	a=$((RANDOM % NACC))
	r=$((RANDOM % 100))
	if [ $r -lt 40 ]; then
		path="/accounts/${ACC[$a]}/deposits"
		body="{\\\"amount\\\":$((RANDOM % 3000 + 1)),\\\"reference\\\":\\\"d$n\\\"}"
	elif [ $r -lt 65 ]; then
		path="/accounts/${ACC[$a]}/withdrawals"
		body="{\\\"amount\\\":$((RANDOM % 800 + 1))}"
	elif [ $r -lt 97 ]; then
		b=$(((a + 2 * (RANDOM % (NACC / 2 - 1) + 1)) % NACC))
		path=/transfers
		body="{\\\"from\\\":\\\"${ACC[$a]}\\\",\\\"to\\\":\\\"${ACC[$b]}\\\",\\\"amount\\\":$((RANDOM % 700 + 1))}"
	else
		path="/accounts/${ACC[$a]}/close"
		body="{}"
	fi
	# "next" separates transfers, each with its own options
	[ "$n" -eq 1 ] || echo next >>"$conf"
	printf 'url = "%s%s"\ndata = "%s"\nheader = "Content-Type: application/json"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' \
		"$CMD_URL" "$path" "$body" >>"$conf"
done
with_auth "$conf"
curl -q -s --parallel --parallel-immediate --parallel-max 16 --max-time 60 \
	--config "$conf" >"$TEST_TMP/codes" 2>"$TEST_TMP/curl.err" ||
	fail "curl: $(tail -3 "$TEST_TMP/curl.err")"
expect_eq "$(grep -c . "$TEST_TMP/codes")" $((COMMANDS - NACC)) "answers"
bad=$(grep -vxE '201|409' "$TEST_TMP/codes" | sort | uniq -c || true)
[ -z "$bad" ] || fail "commands answered other than 201 or 409: $bad"
say "$(sort "$TEST_TMP/codes" | uniq -c | paste -sd' ') ; $(psql_q 'SELECT count(*) FROM events') events"

say "wait until every view has caught up with the log"
caught_up()
{
	curl -s "$QRY_URL/status" | jq -e '[.views[].lag_events, .memory.lag_events]
		| all(. == 0)' >/dev/null
}
wait_for 60 caught_up
http GET "$QRY_URL/status"
expect_json '[.views[].stopped, .memory.stopped] | any' false
# no transaction left open; the projector's own once-a-second save of an
# idle window holds an xid for a moment, so this is a wait
no_pending()
{
	local p

	p=$(curl -s "$QRY_URL/status" | jq -c .pending_transactions)
	[ "$p" = "[]" ] || {
		echo "open transactions: $p"
		return 1
	}
}
wait_for 10 no_pending

# the same fold for everything below: one row per account, from SQL alone
ACCOUNTS_SQL="
WITH ev AS (
	SELECT substr(stream_id, 9) AS id, stream_version AS v, event_type AS t,
		data AS d, recorded_at AS r, global_position AS p
	FROM events WHERE stream_id LIKE 'account-%'),
opened AS (SELECT * FROM ev WHERE t = 'AccountOpened')
SELECT o.id, o.d->>'owner' AS owner, o.d->>'currency' AS currency,
	coalesce(sum(CASE WHEN m.t IN ('MoneyDeposited', 'TransferReceived')
		THEN (m.d->>'amount')::bigint
		WHEN m.t IN ('MoneyWithdrawn', 'TransferSent')
		THEN -(m.d->>'amount')::bigint END), 0) AS balance,
	(o.d->>'overdraft_limit')::bigint AS overdraft_limit,
	CASE WHEN bool_or(m.t = 'AccountClosed') THEN 'closed' ELSE 'open' END
		AS status,
	max(m.v) AS version,
	to_char(o.r AT TIME ZONE 'UTC', $TS) AS opened_at,
	to_char(max(m.r) AT TIME ZONE 'UTC', $TS) AS updated_at
FROM opened o JOIN ev m ON m.id = o.id
GROUP BY o.id, o.d, o.r"

say "every account: GET /accounts/{id} (in memory) equals the fold"
psql_q "SELECT concat_ws('|', id, owner, currency, balance, overdraft_limit,
	status, version, opened_at, updated_at) FROM ($ACCOUNTS_SQL) f ORDER BY id" \
	>"$TEST_TMP/accounts.sql"
expect_eq "$(grep -c . "$TEST_TMP/accounts.sql")" "$NACC" "accounts folded"
: >"$TEST_TMP/accounts.http"
for id in $(cut -d'|' -f1 "$TEST_TMP/accounts.sql"); do
	http GET "$QRY_URL/accounts/$id"
	expect_status 200
	jq -r '[.id, .owner, .currency, .balance, .overdraft_limit, .status,
		.version, .opened_at, .updated_at] | map(tostring) | join("|")' \
		<<<"$HTTP_BODY" >>"$TEST_TMP/accounts.http"
done
diff -u "$TEST_TMP/accounts.sql" "$TEST_TMP/accounts.http" >&2 ||
	fail "the account view differs from the fold"
# the overdraft limit held under concurrency (the command side's rule)
expect_eq "$(psql_q "SELECT count(*) FROM ($ACCOUNTS_SQL) f
	WHERE balance < -overdraft_limit")" 0 "balances within their limits"

say "every statement: GET /accounts/{id}/transactions (paged) equals the fold"
MOVES="('MoneyDeposited', 'MoneyWithdrawn', 'TransferSent', 'TransferReceived')"
psql_q "SELECT concat_ws('|', substr(stream_id, 9), stream_version,
	CASE event_type WHEN 'MoneyDeposited' THEN 'deposit'
		WHEN 'MoneyWithdrawn' THEN 'withdrawal'
		WHEN 'TransferSent' THEN 'transfer_out' ELSE 'transfer_in' END,
	data->>'amount', data->>'balance_after', data->>'currency',
	coalesce(data->>'to_account_id', data->>'from_account_id', '-'),
	coalesce(data->>'transfer_id', '-'), coalesce(data->>'reference', '-'),
	to_char(recorded_at AT TIME ZONE 'UTC', $TS))
	FROM events WHERE stream_id LIKE 'account-%' AND event_type IN $MOVES
	ORDER BY substr(stream_id, 9), stream_version" >"$TEST_TMP/statement.sql"
expect_eq "$(psql_q "SELECT count(*) FROM (SELECT (data->>'balance_after')::bigint
	AS b, sum(CASE WHEN event_type IN ('MoneyDeposited', 'TransferReceived')
		THEN (data->>'amount')::bigint ELSE -(data->>'amount')::bigint END)
		OVER (PARTITION BY stream_id ORDER BY stream_version) AS s
	FROM events WHERE event_type IN $MOVES) x WHERE b <> s")" 0 \
	"balance_after is the running sum of the amounts"
: >"$TEST_TMP/statement.http"
pages=0
for id in $(cut -d'|' -f1 "$TEST_TMP/accounts.sql"); do
	after=
	while :; do
		http GET "$QRY_URL/accounts/$id/transactions?limit=40${after:+&after=$after}"
		expect_status 200
		pages=$((pages + 1))
		jq -r --arg id "$id" '.items[] | [$id, .version, .kind, .amount,
			.balance_after, .currency, (.counterparty // "-"),
			(.transfer_id // "-"), (.reference // "-"), .recorded_at]
			| map(tostring) | join("|")' <<<"$HTTP_BODY" \
			>>"$TEST_TMP/statement.http"
		after=$(jq -r '.next // empty' <<<"$HTTP_BODY")
		[ -n "$after" ] || break
		[ "$pages" -lt 1000 ] || fail "statement paging does not end"
	done
done
diff -u "$TEST_TMP/statement.sql" "$TEST_TMP/statement.http" >&2 ||
	fail "the statement view differs from the fold"
say "$(grep -c . "$TEST_TMP/statement.http") movements in $pages pages"

say "every owner: GET /owners/{owner}/accounts equals the fold"
for owner in "${OWNERS[@]}"; do
	enc=$(jq -rn --arg s "$owner" '$s|@uri')
	want=$(psql_q "SELECT string_agg(id, ',' ORDER BY id) FROM ($ACCOUNTS_SQL) f
		WHERE owner = \$\$$owner\$\$")
	want_totals=$(psql_q "SELECT string_agg(currency || '=' || b || '/' || n, ','
		ORDER BY currency) FROM (SELECT currency, sum(balance) AS b,
		count(*) AS n FROM ($ACCOUNTS_SQL) f WHERE owner = \$\$$owner\$\$
		GROUP BY currency) t")
	http GET "$QRY_URL/owners/$enc/accounts?limit=1000"
	expect_status 200
	expect_json .owner "$owner"
	expect_json '[.items[].id] | join(",")' "$want"
	jq -e --arg o "$owner" 'all(.items[]; .owner == $o)' <<<"$HTTP_BODY" \
		>/dev/null || fail "another owner's account: $HTTP_BODY"
	expect_json '.totals | map("\(.currency)=\(.balance)/\(.accounts)") | join(",")' \
		"$want_totals"
	# the same page by page
	http GET "$QRY_URL/owners/$enc/accounts?limit=3"
	got=$(jq -r '[.items[].id] | join(",")' <<<"$HTTP_BODY")
	next=$(jq -r '.next // empty' <<<"$HTTP_BODY")
	while [ -n "$next" ]; do
		http GET "$QRY_URL/owners/$enc/accounts?limit=3&after=$next"
		got+=",$(jq -r '[.items[].id] | join(",")' <<<"$HTTP_BODY")"
		next=$(jq -r '.next // empty' <<<"$HTTP_BODY")
	done
	expect_eq "$got" "$want" "pages of $owner's accounts"
done

say "GET /stats/daily (paged) equals the fold"
psql_q "SELECT concat_ws('|', day, currency, ds, dc, ws, wc, ts, tc) FROM (
	SELECT to_char((recorded_at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD') AS day,
		data->>'currency' AS currency,
		coalesce(sum((data->>'amount')::bigint)
			FILTER (WHERE event_type = 'MoneyDeposited'), 0) AS ds,
		count(*) FILTER (WHERE event_type = 'MoneyDeposited') AS dc,
		coalesce(sum((data->>'amount')::bigint)
			FILTER (WHERE event_type = 'MoneyWithdrawn'), 0) AS ws,
		count(*) FILTER (WHERE event_type = 'MoneyWithdrawn') AS wc,
		coalesce(sum((data->>'amount')::bigint)
			FILTER (WHERE event_type = 'TransferSent'), 0) AS ts,
		count(*) FILTER (WHERE event_type = 'TransferSent') AS tc
	FROM events WHERE stream_id LIKE 'account-%'
		AND event_type IN ('MoneyDeposited', 'MoneyWithdrawn', 'TransferSent')
	GROUP BY 1, 2) d ORDER BY day, currency" >"$TEST_TMP/daily.sql"
: >"$TEST_TMP/daily.http"
after=
while :; do
	http GET "$QRY_URL/stats/daily?limit=1${after:+&after=$after}"
	expect_status 200
	jq -r '.items[] | [.day, .currency, .deposits.sum, .deposits.count,
		.withdrawals.sum, .withdrawals.count, .transfers.sum,
		.transfers.count] | map(tostring) | join("|")' <<<"$HTTP_BODY" \
		>>"$TEST_TMP/daily.http"
	after=$(jq -r '.next // empty' <<<"$HTTP_BODY")
	[ -n "$after" ] || break
done
diff -u "$TEST_TMP/daily.sql" "$TEST_TMP/daily.http" >&2 ||
	fail "the daily view differs from the fold"

say "GET /audit/large-transactions (paged) equals the fold"
MIN=1500
psql_q "SELECT concat_ws('|', data->>'amount', global_position,
	substr(stream_id, 9), event_type) FROM events
	WHERE stream_id LIKE 'account-%' AND event_type IN $MOVES
	AND (data->>'amount')::bigint >= $MIN
	ORDER BY (data->>'amount')::bigint DESC, global_position" \
	>"$TEST_TMP/large.sql"
[ -s "$TEST_TMP/large.sql" ] || fail "no movement of at least $MIN"
: >"$TEST_TMP/large.http"
after=
pages=0
while :; do
	http GET "$QRY_URL/audit/large-transactions?min_amount=$MIN&limit=50${after:+&after=$after}"
	expect_status 200
	pages=$((pages + 1))
	jq -r '.items[] | [.amount, .position, .account_id, ({deposit:
		"MoneyDeposited", withdrawal: "MoneyWithdrawn", transfer_out:
		"TransferSent", transfer_in: "TransferReceived"}[.kind])]
		| map(tostring) | join("|")' <<<"$HTTP_BODY" >>"$TEST_TMP/large.http"
	after=$(jq -r '.next // empty' <<<"$HTTP_BODY")
	[ -n "$after" ] || break
	[ "$pages" -lt 1000 ] || fail "large-transactions paging does not end"
done
diff -u "$TEST_TMP/large.sql" "$TEST_TMP/large.http" >&2 ||
	fail "the large transactions differ from the fold"
say "$(grep -c . "$TEST_TMP/large.http") large movements in $pages pages"

say "restart: the in-memory view loads the table and its checkpoint, then tails on"
expect_eq "$(stop_pid "$QRY_PID")" 0 "query-service exit status"
for i in $(seq 0 2 38); do
	st=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
		--data-binary "{\"amount\":$((i + 1))}" "$CMD_URL/accounts/${ACC[$i]}/deposits")
	case $st in 201 | 409) ;; *) fail "deposit: $st" ;; esac
done
start_service QRY2 query-service POLL_INTERVAL_MS=50
QRY_URL=$QRY2_URL
wait_for 60 caught_up
grep -q "\"event\":\"memory_loaded\",\"accounts\":$NACC," "$TEST_TMP/QRY2.log" ||
	fail "the restarted service did not load $NACC accounts from the table"
psql_q "SELECT concat_ws('|', id, owner, currency, balance, overdraft_limit,
	status, version, opened_at, updated_at) FROM ($ACCOUNTS_SQL) f ORDER BY id" \
	>"$TEST_TMP/accounts.sql"
: >"$TEST_TMP/accounts.http"
for id in $(cut -d'|' -f1 "$TEST_TMP/accounts.sql"); do
	http GET "$QRY_URL/accounts/$id"
	expect_status 200
	jq -r '[.id, .owner, .currency, .balance, .overdraft_limit, .status,
		.version, .opened_at, .updated_at] | map(tostring) | join("|")' \
		<<<"$HTTP_BODY" >>"$TEST_TMP/accounts.http"
done
diff -u "$TEST_TMP/accounts.sql" "$TEST_TMP/accounts.http" >&2 ||
	fail "after a restart, the account view differs from the fold"
expect_eq "$(stop_pid "$QRY2_PID")" 0 "query-service exit status"
expect_eq "$(stop_pid "$CMD_PID")" 0 "command-service exit status"
