#!/usr/bin/env bash
# t0400-view-flush.sh - the views' folds and bulk flushes against real
# tables (issue 5): varied traffic through the command service (two
# currencies, several owners, deposits, withdrawals, transfers, closes,
# refusals, awkward owners and references), a raw append outside the
# account category, plain SQL events (an unknown type on an account
# stream, transfers either side of UTC midnight); then qry_view_flush
# folds the log in batches of random sizes and flushes them, into the
# live tables and into "_rebuild" shadows, and each table must equal an
# independent fold of the events table written in SQL. Also: a flush is
# a few statements whatever the batch size, and an account never opened
# or a money event without a currency stops the view with a clear error.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

QF=$TANDEM_BUILD/tests/qry_view_flush
[ -x "$QF" ] || fail "no $QF: build it with make"
SEED=${T0400_SEED:-$RANDOM}
RANDOM=$SEED
say "seed $SEED (T0400_SEED=$SEED to repeat)"

migrate_db
start_service CMD command-service DB_POOL_SIZE=4

# post PATH BODY: the status, the body in $TEST_TMP/body
post()
{
	curl -sS --max-time 30 -o "$TEST_TMP/body" -w '%{http_code}' \
		-H 'Content-Type: application/json' --data-binary "$2" \
		"$CMD_URL$1"
}

# post_ok PATH BODY: 201 or 409 (a rule refused it), anything else fails
post_ok()
{
	local st

	st=$(post "$1" "$2")
	case $st in
	201 | 409) echo "$st" ;;
	*) fail "POST $1 $2: $st $(cat "$TEST_TMP/body")" ;;
	esac
}

say "open accounts in EUR and USD for four owners"
OWNERS=('Ann Smith' 'Zoë "Zed" Ørsted, {x}\y' 'Bob' "O'Brien; DROP TABLE x")
ACC=()
CUR=()
for o in "${OWNERS[@]}"; do
	for c in EUR USD EUR; do
		body=$(jq -cn --arg o "$o" --arg c "$c" \
			'{owner: $o, currency: $c, overdraft_limit: 2000}')
		[ "$(post /accounts "$body")" = 201 ] ||
			fail "open: $(cat "$TEST_TMP/body")"
		ACC+=("$(jq -r .account_id "$TEST_TMP/body")")
		CUR+=("$c")
	done
done
N=${#ACC[@]}

# references as JSON members (",\"reference\":...") or nothing; with tabs,
# newlines, carriage returns, backslashes, quotes, braces and commas
REFS=('')
for r in salary $'tab\there' $'line\nbreak' 'back\slash' 'quote"d' \
	'ünïcode €' '{brace},comma' $'cr\rx'; do
	REFS+=(",$(jq -cn --arg r "$r" '{reference: $r}' | sed 's/^{//; s/}$//')")
done

# request PATH BODY: one more POST for the single curl below (its config
# file syntax: a quoted string escapes backslashes and quotes)
request()
{
	local body=${2//\\/\\\\}

	body=${body//\"/\\\"}
	printf 'url = "%s%s"\nrequest = "POST"\n' "$CMD_URL" "$1"
	printf 'header = "Content-Type: application/json"\n'
	printf 'data-binary = "%s"\noutput = "/dev/null"\n' "$body"
	printf 'write-out = "%%{http_code}\\n"\nnext\n'
}

say "random deposits, withdrawals and transfers from three clients at once"
for c in 1 2 3; do
	for _ in $(seq 1 400); do
		a=$((RANDOM % N))
		amount=$((RANDOM % 5000 + 1))
		ref=${REFS[RANDOM % ${#REFS[@]}]}
		case $((RANDOM % 10)) in
		0 | 1 | 2 | 3)
			request "/accounts/${ACC[a]}/deposits" \
				"{\"amount\":$amount$ref}"
			;;
		4 | 5 | 6)
			request "/accounts/${ACC[a]}/withdrawals" \
				"{\"amount\":$amount$ref}"
			;;
		*)
			# another account; now and then of another currency:
			# refused
			b=$(((a + 1 + RANDOM % (N - 1)) % N))
			request /transfers "{\"from\":\"${ACC[a]}\",\"to\":\"${ACC[b]}\",\"amount\":$amount$ref}"
			;;
		esac
	done >"$TEST_TMP/traffic$c.cfg"
	# no "next" after the last request
	sed -i '$d' "$TEST_TMP/traffic$c.cfg"
done
# one curl per client, one connection each, its requests in turn
pids=()
for c in 1 2 3; do
	with_auth "$TEST_TMP/traffic$c.cfg"
	curl -q -sS --max-time 300 -K "$TEST_TMP/traffic$c.cfg" \
		>"$TEST_TMP/traffic$c.st" &
	pids+=("$!")
done
for p in "${pids[@]}"; do
	wait "$p" || fail "a client's curl failed"
done
cat "$TEST_TMP"/traffic?.st >"$TEST_TMP/traffic.st"
expect_eq "$(wc -l <"$TEST_TMP/traffic.st")" 1200 "answers"
expect_eq "$(grep -cvE '^(201|409)$' "$TEST_TMP/traffic.st" || true)" 0 \
	"answers other than 201 and 409: $(sort "$TEST_TMP/traffic.st" | uniq -c)"
created=$(grep -c '^201$' "$TEST_TMP/traffic.st" || true)
[ "$created" -gt 600 ] || fail "only $created commands succeeded"

# balance ID: the account's balance according to its last event
balance()
{
	psql_q "SELECT coalesce((SELECT (data->>'balance_after')::bigint
		FROM events WHERE stream_id = 'account-$1'
		AND data ? 'balance_after' ORDER BY stream_version DESC
		LIMIT 1), 0)"
}

say "bring three accounts to zero and close them"
for a in 0 4 8; do
	bal=$(balance "${ACC[a]}")
	if [ "$bal" -gt 0 ]; then
		[ "$(post "/accounts/${ACC[a]}/withdrawals" \
			"{\"amount\":$bal}")" = 201 ] || fail "withdraw all"
	elif [ "$bal" -lt 0 ]; then
		[ "$(post "/accounts/${ACC[a]}/deposits" \
			"{\"amount\":$((-bal))}")" = 201 ] || fail "deposit"
	fi
	[ "$(post "/accounts/${ACC[a]}/close" '{}')" = 201 ] ||
		fail "close: $(cat "$TEST_TMP/body")"
	[ "$(post "/accounts/${ACC[a]}/deposits" '{"amount":5}')" = 409 ] ||
		fail "a deposit to a closed account was not refused"
done

say "events outside the account category and of unknown types"
[ "$(post /streams/orders-1/events '{"expected_version":"any","events":[
	{"type":"MoneyDeposited","data":{"amount":7,"balance_after":7,
	 "currency":"EUR"}},
	{"type":"AccountOpened","data":{"owner":"nobody","currency":"EUR",
	 "overdraft_limit":0}}]}')" = 201 ] ||
	fail "raw append: $(cat "$TEST_TMP/body")"
# a plain INSERT may append anywhere (SPEC 3): an event type this version
# does not know, on an account stream; and an account stream whose id is
# not a UUID
psql_q "INSERT INTO events (stream_id, stream_version, event_id, event_type,
		data, metadata)
	SELECT stream_id, max(stream_version) + 1, gen_random_uuid(),
		'AccountNicknamed', '{\"nick\": \"rainy day\"}', '{}'
	FROM events WHERE stream_id = 'account-${ACC[1]}' GROUP BY stream_id;
	INSERT INTO events (stream_id, stream_version, event_id, event_type,
		data, metadata)
	VALUES ('account-not-a-uuid', 1, gen_random_uuid(), 'MoneyDeposited',
		'{\"amount\": 1, \"balance_after\": 1, \"currency\": \"EUR\"}',
		'{}')"

say "GBP accounts with movements either side of UTC midnight"
G1=aaaaaaaa-0000-4000-8000-000000000001
G2=aaaaaaaa-0000-4000-8000-000000000002
T=bbbbbbbb-0000-4000-8000-000000000001
psql_q "INSERT INTO events (stream_id, stream_version, event_id, event_type,
		data, metadata, recorded_at) VALUES
	('account-$G1', 1, gen_random_uuid(), 'AccountOpened',
	 '{\"account_id\": \"$G1\", \"owner\": \"Gail\", \"currency\": \"GBP\",
	   \"overdraft_limit\": 0}', '{}', '2024-02-29 23:00:00+00'),
	('account-$G1', 2, gen_random_uuid(), 'MoneyDeposited',
	 '{\"amount\": 900, \"balance_after\": 900, \"currency\": \"GBP\"}',
	 '{}', '2024-02-29 23:59:59.999999+00'),
	('account-$G1', 3, gen_random_uuid(), 'MoneyDeposited',
	 '{\"amount\": 100, \"balance_after\": 1000, \"currency\": \"GBP\"}',
	 '{}', '2024-03-01 00:00:00+00'),
	('account-$G2', 1, gen_random_uuid(), 'AccountOpened',
	 '{\"account_id\": \"$G2\", \"owner\": \"Gail\", \"currency\": \"GBP\",
	   \"overdraft_limit\": 0}', '{}', '2024-02-29 23:00:00+00');
	INSERT INTO events (stream_id, stream_version, event_id, event_type,
		data, metadata, recorded_at) VALUES
	('account-$G1', 4, gen_random_uuid(), 'TransferSent',
	 '{\"transfer_id\": \"$T\", \"to_account_id\": \"$G2\", \"amount\": 300,
	   \"balance_after\": 700, \"currency\": \"GBP\"}', '{}',
	 '2024-03-01 23:59:59.999999+00'),
	('account-$G2', 2, gen_random_uuid(), 'TransferReceived',
	 '{\"transfer_id\": \"$T\", \"from_account_id\": \"$G1\",
	   \"amount\": 300, \"balance_after\": 300, \"currency\": \"GBP\"}',
	 '{}', '2024-03-02 00:00:00+00'),
	('account-$G1', 5, gen_random_uuid(), 'MoneyWithdrawn',
	 '{\"amount\": 700, \"balance_after\": 0, \"currency\": \"GBP\"}',
	 '{}', '2024-03-02 00:00:00.000001+00'),
	('account-$G1', 6, gen_random_uuid(), 'AccountClosed', '{}', '{}',
	 '2024-03-02 00:00:01+00')" >/dev/null
say "$(psql_q "SELECT count(*) FROM events") events in the log"

# The folds, in SQL, straight from the events table.
ACCOUNT_EVENTS="SELECT substr(stream_id, 9)::uuid AS account_id,
		stream_version, global_position, event_type, data, recorded_at
	FROM events
	WHERE stream_id ~ '^account-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\$'"
MONEY="('MoneyDeposited', 'MoneyWithdrawn', 'TransferSent', 'TransferReceived')"
KNOWN="('AccountOpened', 'AccountClosed', 'MoneyDeposited', 'MoneyWithdrawn',
	'TransferSent', 'TransferReceived')"

EXPECT_ACCOUNTS="WITH ev AS ($ACCOUNT_EVENTS AND event_type IN $KNOWN),
	opened AS (SELECT account_id, data, recorded_at FROM ev
		WHERE event_type = 'AccountOpened'),
	last AS (SELECT DISTINCT ON (account_id) account_id, stream_version,
			global_position, recorded_at
		FROM ev ORDER BY account_id, stream_version DESC),
	money AS (SELECT DISTINCT ON (account_id) account_id,
			(data->>'balance_after')::bigint AS balance
		FROM ev WHERE event_type IN $MONEY
		ORDER BY account_id, stream_version DESC),
	closed AS (SELECT DISTINCT account_id FROM ev
		WHERE event_type = 'AccountClosed')
	SELECT o.account_id, o.data->>'owner', o.data->>'currency',
		coalesce(m.balance, 0), (o.data->>'overdraft_limit')::bigint,
		CASE WHEN c.account_id IS NULL THEN 'open' ELSE 'closed' END,
		l.stream_version, o.recorded_at, l.recorded_at,
		l.global_position
	FROM opened o JOIN last l USING (account_id)
	LEFT JOIN money m USING (account_id)
	LEFT JOIN closed c USING (account_id)"

EXPECT_STATEMENT="SELECT account_id, stream_version, global_position,
		CASE event_type WHEN 'MoneyDeposited' THEN 'deposit'
			WHEN 'MoneyWithdrawn' THEN 'withdrawal'
			WHEN 'TransferSent' THEN 'transfer_out'
			ELSE 'transfer_in' END,
		(data->>'amount')::bigint, (data->>'balance_after')::bigint,
		data->>'currency',
		(CASE event_type WHEN 'TransferSent' THEN data->>'to_account_id'
			WHEN 'TransferReceived' THEN data->>'from_account_id'
			END)::uuid,
		(data->>'transfer_id')::uuid, data->>'reference', recorded_at
	FROM ($ACCOUNT_EVENTS AND event_type IN $MONEY) ev"

EXPECT_DAILY="SELECT (recorded_at AT TIME ZONE 'UTC')::date,
		data->>'currency',
		coalesce(sum((data->>'amount')::bigint)
			FILTER (WHERE event_type = 'MoneyDeposited'), 0)::bigint,
		count(*) FILTER (WHERE event_type = 'MoneyDeposited'),
		coalesce(sum((data->>'amount')::bigint)
			FILTER (WHERE event_type = 'MoneyWithdrawn'), 0)::bigint,
		count(*) FILTER (WHERE event_type = 'MoneyWithdrawn'),
		coalesce(sum((data->>'amount')::bigint)
			FILTER (WHERE event_type = 'TransferSent'), 0)::bigint,
		count(*) FILTER (WHERE event_type = 'TransferSent')
	FROM ($ACCOUNT_EVENTS AND event_type IN
		('MoneyDeposited', 'MoneyWithdrawn', 'TransferSent')) ev
	GROUP BY 1, 2"

# same TABLE EXPECTED_SQL: the table holds exactly the expected rows
same()
{
	local table=$1 expected=$2 out

	out=$(psql_q "WITH e AS ($expected),
		extra AS (TABLE $table EXCEPT ALL TABLE e),
		lacking AS (TABLE e EXCEPT ALL TABLE $table)
		SELECT (SELECT count(*) FROM e), (SELECT count(*) FROM $table),
			(SELECT count(*) FROM extra),
			(SELECT count(*) FROM lacking)" -F ' ')
	read -r ne nt nx nl <<<"$out"
	if [ "$nx" != 0 ] || [ "$nl" != 0 ] || [ "$ne" != "$nt" ]; then
		psql_q "WITH e AS ($expected)
			(SELECT 'extra', t::text FROM (TABLE $table EXCEPT ALL
				TABLE e) t LIMIT 5)
			UNION ALL
			(SELECT 'lacking', t::text FROM (TABLE e EXCEPT ALL
				TABLE $table) t LIMIT 5)" >&2
		fail "$table: $nt rows, $ne expected, $nx extra, $nl lacking"
	fi
	echo "$nt"
}

# check_views SUFFIX: every view table + SUFFIX equals the SQL fold
check_views()
{
	local n

	n=$(same "view_accounts$1" "$EXPECT_ACCOUNTS")
	expect_eq "$n" $((N + 2)) "accounts in view_accounts$1"
	n=$(same "view_statement$1" "$EXPECT_STATEMENT")
	[ "$n" -gt 800 ] || fail "only $n statement rows"
	n=$(same "view_daily$1" "$EXPECT_DAILY")
	[ "$n" -ge 5 ] || fail "only $n daily rows"
}

# flush SUFFIX SEED: qry_view_flush flush, in many batches
flush()
{
	local out events batches

	out=$("$QF" flush "$1" "$2")
	say "$out"
	read -r _ events _ batches _ <<<"$out"
	[ "$events" -gt 800 ] || fail "only $events events folded"
	# batches hold at most 300 events
	[ "$batches" -ge 4 ] || fail "only $batches batches"
}

say "fold and flush into the live tables in batches of random sizes"
flush "" "$SEED"
check_views ""

say "the fold's edge cases landed as meant"
expect_eq "$(psql_q "SELECT status, balance, version FROM view_accounts
	WHERE account_id = '${ACC[0]}'")" \
	"closed|0|$(psql_q "SELECT max(stream_version) FROM events
		WHERE stream_id = 'account-${ACC[0]}'")" "a closed account"
expect_eq "$(psql_q "SELECT version FROM view_accounts
	WHERE account_id = '${ACC[1]}'")" \
	"$(psql_q "SELECT max(stream_version) - 1 FROM events
		WHERE stream_id = 'account-${ACC[1]}'")" \
	"the unknown event type does not move the version"
expect_eq "$(psql_q "SELECT owner FROM view_accounts
	WHERE account_id = '${ACC[3]}'")" "${OWNERS[1]}" "owner with quotes"
expect_eq "$(psql_q "SELECT day || ' ' || deposits_sum || ' ' ||
		deposits_count || ' ' || transfers_sum || ' ' ||
		transfers_count || ' ' || withdrawals_sum
	FROM view_daily WHERE currency = 'GBP' ORDER BY day" | paste -sd ,)" \
	"2024-02-29 900 1 0 0 0,2024-03-01 100 1 300 1 0,2024-03-02 0 0 0 0 700" \
	"GBP days split at UTC midnight, the transfer counted once"
expect_eq "$(psql_q "SELECT count(*) FROM view_statement
	WHERE reference = E'line\\nbreak' OR reference = E'tab\\there'
	OR reference = 'back\\slash'")" \
	"$(psql_q "SELECT count(*) FROM events WHERE data->>'reference'
	IN (E'line\\nbreak', E'tab\\there', 'back\\slash')
	AND stream_id LIKE 'account-%'")" \
	"references with tabs, newlines and backslashes"
expect_eq "$(psql_q "SELECT count(*) FROM view_statement
	WHERE account_id NOT IN (SELECT account_id FROM view_accounts)")" 0 \
	"statement rows of unknown accounts"

say "again into _rebuild shadow tables, other batch sizes"
flush _rebuild "$((SEED + 1))"
check_views _rebuild
# view_statement_rebuild was indexed after the load, like LIKE would have
expect_eq "$(psql_q "SELECT string_agg(indexname, ' ' ORDER BY indexname)
	FROM pg_indexes WHERE tablename IN ('view_accounts_rebuild',
		'view_statement_rebuild', 'view_daily_rebuild')")" \
	"view_accounts_rebuild_owner_account_id_idx view_accounts_rebuild_pkey view_daily_rebuild_pkey view_statement_rebuild_amount_position_idx view_statement_rebuild_pkey" \
	"the shadows' indexes"
expect_eq "$(psql_q "SELECT pg_get_constraintdef(oid) FROM pg_constraint
	WHERE conname = 'view_statement_rebuild_pkey' AND contype = 'p'")" \
	"PRIMARY KEY (account_id, version)" "the statement shadow's key"
expect_eq "$(psql_q "SELECT regexp_replace(indexdef, '_rebuild', '', 'g')
	FROM pg_indexes
	WHERE indexname = 'view_statement_rebuild_amount_position_idx'")" \
	"$(psql_q "SELECT indexdef FROM pg_indexes
	WHERE indexname = 'view_statement_amount_position_idx'")" \
	"the statement shadow's index"
expect_eq "$(psql_q "SELECT array_to_string(reloptions, ',') FROM pg_class
	WHERE relname = 'view_accounts_rebuild'")" "fillfactor=50" \
	"the shadow's storage parameters"

say "a flush is a few statements, whatever the batch size"
out=$("$QF" statements _stmts)
say "$(tr '\n' ';' <<<"$out")"
# audit: the actions of the transaction the halves split (as a
# projector's read that stops inside one) merged, the rest in one COPY,
# with no COPY undone
for want in "accounts 2" "statement 1" "daily 1" "audit 2"; do
	view=${want% *}
	line=$(grep "^$view " <<<"$out") || fail "no line for $view: $out"
	read -r _ events _ statements _ <<<"$line"
	[ "$events" -gt 50 ] || fail "$view: only $events events in the batch"
	expect_eq "$statements" "${want#* }" "statements of the $view flush"
done

say "an account never opened stops the accounts view, naming it"
url=$(new_db "t0400_unopened_$$")
migrate_db "$url" 2>/dev/null
X=cccccccc-0000-4000-8000-000000000001
DATABASE_URL=$url psql_q "INSERT INTO events (stream_id, stream_version,
		event_id, event_type, data, metadata)
	VALUES ('account-$X', 1, gen_random_uuid(), 'MoneyDeposited',
		'{\"amount\": 5, \"balance_after\": 5, \"currency\": \"EUR\"}',
		'{}')"
if DATABASE_URL=$url "$QF" flush "" 1 2>"$TEST_TMP/unopened.err"; then
	fail "the flush of an account never opened succeeded"
fi
grep -q "account '$X' has events but was never opened" \
	"$TEST_TMP/unopened.err" ||
	fail "unexpected error: $(cat "$TEST_TMP/unopened.err")"
expect_eq "$(DATABASE_URL=$url psql_q "SELECT count(*) FROM view_statement")" \
	0 "nothing of the failed batch was committed"

say "a money event without a currency is malformed for the daily view"
url=$(new_db "t0400_nocurrency_$$")
migrate_db "$url" 2>/dev/null
DATABASE_URL=$url psql_q "INSERT INTO events (stream_id, stream_version,
		event_id, event_type, data, metadata)
	VALUES ('account-$X', 1, gen_random_uuid(), 'AccountOpened',
		'{\"owner\": \"Old\", \"currency\": \"EUR\",
		  \"overdraft_limit\": 0}', '{}'),
	('account-$X', 2, gen_random_uuid(), 'MoneyDeposited',
		'{\"amount\": 5, \"balance_after\": 5}', '{}')"
if DATABASE_URL=$url "$QF" flush "" 1 2>"$TEST_TMP/nocur.err"; then
	fail "a money event without currency passed the daily view"
fi
grep -q "view daily: event [0-9]* (MoneyDeposited of 'account-$X'): 'currency' is missing" \
	"$TEST_TMP/nocur.err" ||
	fail "unexpected error: $(cat "$TEST_TMP/nocur.err")"
