#!/usr/bin/env bash
# t0305-concurrency.sh - many clients at once (issue 4): withdrawals racing
# for the last money, many clients hammering one account, crossing
# transfers; within one command-service process and across two sharing
# the database (the optimistic version check and the retry loop).
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
# Fairness: a command that loses the race for an account to the other
# process must get through on its next tries. Its process then takes the
# stream locks exclusive (cmd_round_serialize()), which every append waits
# for (0014_append_stream_locks.sql, t0307): at most
# CMD_SERIALIZE_AFTER + 1 = 3 decisions. Optimistic retries alone let the
# busier process starve the other's commands (a 503 after 30 decisions in
# about one run of four; with the locks taken by the loser only, 2 of 500
# deposits still gave up after 6).
start_service CMD command-service DB_POOL_SIZE=8 COMMAND_RETRIES=3
start_service CMD2 command-service DB_POOL_SIZE=8 COMMAND_RETRIES=3

OUT=$TEST_TMP/out
mkdir -p "$OUT"

open_account()
{
	http POST "$1/accounts" "{\"owner\":\"$2\",\"currency\":\"EUR\"}"
	expect_status 201
	jq -r .account_id <<<"$HTTP_BODY"
}

deposit()
{
	http POST "$CMD_URL/accounts/$1/deposits" "{\"amount\":$2}"
	expect_status 201
}

# client NAME URL PATH BODY COUNT: COUNT sequential POSTs; the statuses in
# $OUT/NAME.st, one a line, the bodies in $OUT/NAME.body.I
client()
{
	local name=$1 url=$2 path=$3 body=$4 count=$5

	# one curl, COUNT requests in turn on one connection (a URL glob;
	# the query string is ignored by the service)
	curl -sS --max-time 120 -o "$OUT/$name.body.#1" -w '%{http_code}\n' \
		-X POST -H 'Content-Type: application/json' \
		--data-binary "$body" "$url$path?n=[1-$count]" \
		>"$OUT/$name.st" || true
}

statuses()
{
	cat "$OUT"/"$1"*.st | sort | uniq -c |
		awk '{print $2 "x" $1}' | paste -sd ' '
}

# gap_free ACCOUNT: versions 1..N, N printed
gap_free()
{
	local n lo hi

	read -r n lo hi < <(psql_q "SELECT count(*), min(stream_version),
		max(stream_version) FROM events WHERE stream_id = 'account-$1'" \
		-F ' ')
	if [ "$lo" != 1 ] || [ "$n" != "$hi" ]; then
		fail "versions of account $1 are not 1..N:" \
			"count $n, min $lo, max $hi"
	fi
	echo "$n"
}

balance()
{
	psql_q "SELECT data->>'balance_after' FROM events
		WHERE stream_id = 'account-$1' ORDER BY stream_version DESC LIMIT 1"
}

# race NAME URL...: 40 withdrawals of 100 from an account holding 1,000,
# spread over the URLs: exactly 10 succeed, 30 are insufficient funds
race()
{
	local name=$1 acc i urls pids=()

	shift
	urls=("$@")
	acc=$(open_account "$CMD_URL" "$name")
	deposit "$acc" 1000
	for ((i = 0; i < 40; i++)); do
		client "$name-$i" "${urls[i % ${#urls[@]}]}" \
			"/accounts/$acc/withdrawals" '{"amount":100}' 1 &
		pids+=($!)
	done
	wait "${pids[@]}"
	expect_eq "$(statuses "$name-")" "201x10 409x30" "40 withdrawals ($name)"
	expect_eq "$(cat "$OUT/$name"-*.body.1 | jq -r 'select(.status == 409)
		| .detail | test("insufficient funds")' | sort | uniq -c |
		awk '{print $2 "x" $1}')" truex30 "every 409 is about funds"
	expect_eq "$(gap_free "$acc")" 12 "open, deposit, 10 withdrawals"
	expect_eq "$(balance "$acc")" 0 "all the money went out"
	expect_eq "$(psql_q "SELECT min((data->>'balance_after')::bigint)
		FROM events WHERE stream_id = 'account-$acc'")" 0 \
		"the balance never went below 0"
}

say "40 concurrent withdrawals of 100 from 1,000, one process"
race one "$CMD_URL"

say "the same across two processes"
race two "$CMD_URL" "$CMD2_URL"

say "20 clients x 25 deposits on one account, two processes"
H=$(open_account "$CMD_URL" hammer)
pids=()
for ((c = 0; c < 20; c++)); do
	url=$CMD_URL
	[ $((c % 2)) -eq 0 ] || url=$CMD2_URL
	client "ham-$c" "$url" "/accounts/$H/deposits" '{"amount":3}' 25 &
	pids+=($!)
done
wait "${pids[@]}"
expect_eq "$(statuses ham-)" "201x500" "every deposit accepted"
expect_eq "$(gap_free "$H")" 501 "open and 500 deposits"
expect_eq "$(balance "$H")" 1500 "balance"
# each answer's version is distinct: nobody was told of someone else's
expect_eq "$(cat "$OUT"/ham-*.body.* | jq -r .version | sort -u | wc -l)" \
	500 "distinct versions answered"

# two processes on one account: the store's version check caught the
# other process's appends, and the retry loop hid that from the clients
metric()
{
	http GET "$1/metrics"
	expect_status 200
	awk -v m="$2" '$1 == m {print $2}' <<<"$HTTP_BODY"
}
retries=$(($(metric "$CMD_URL" tandem_command_retries_total) +
	$(metric "$CMD2_URL" tandem_command_retries_total)))
conflicts=$(($(metric "$CMD_URL" tandem_version_conflicts_total) +
	$(metric "$CMD2_URL" tandem_version_conflicts_total)))
say "cross-process conflicts $conflicts, retries $retries"
if [ "$conflicts" -eq 0 ] || [ "$retries" -eq 0 ]; then
	fail "the two processes never conflicted: the test proves nothing"
fi

say "crossing transfers from 16 clients x 50, two processes"
X=$(open_account "$CMD_URL" cross-x)
Y=$(open_account "$CMD_URL" cross-y)
Z=$(open_account "$CMD_URL" cross-z)
deposit "$X" 100000
deposit "$Y" 100000
deposit "$Z" 100000
pids=()
for ((c = 0; c < 16; c++)); do
	case $((c % 4)) in
	0) from=$X to=$Y ;;
	1) from=$Y to=$X ;;
	2) from=$Y to=$Z ;;
	3) from=$Z to=$X ;;
	esac
	url=$CMD_URL
	[ $((c % 3)) -ne 0 ] || url=$CMD2_URL
	client "cross-$c" "$url" /transfers \
		"{\"from\":\"$from\",\"to\":\"$to\",\"amount\":$((c + 1))}" 50 &
	pids+=($!)
done
wait "${pids[@]}"
expect_eq "$(statuses cross-)" "201x800" "every transfer accepted"
for a in "$X" "$Y" "$Z"; do
	gap_free "$a" >/dev/null
done
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE event_type IN ('TransferSent', 'TransferReceived')")" 1600 \
	"two events per transfer"
# money is conserved: the accounts' last balances add up to the deposits
expect_eq "$(psql_q "SELECT sum(b) FROM (SELECT DISTINCT ON (stream_id)
	(data->>'balance_after')::bigint AS b FROM events
	WHERE stream_id IN ('account-$X', 'account-$Y', 'account-$Z')
	ORDER BY stream_id, stream_version DESC) last")" 300000 \
	"money conserved"
expect_eq "$(psql_q "SELECT sum(CASE event_type WHEN 'MoneyDeposited'
	THEN (data->>'amount')::bigint ELSE 0 END) FROM events
	WHERE stream_id IN ('account-$X', 'account-$Y', 'account-$Z')")" \
	300000 "deposits total"
# each transfer's two sides: same transaction, same amount
expect_eq "$(psql_q "SELECT count(*) FROM (SELECT data->>'transfer_id'
	FROM events WHERE event_type IN ('TransferSent', 'TransferReceived')
	GROUP BY data->>'transfer_id' HAVING count(*) <> 2
	OR count(DISTINCT transaction_id) <> 1
	OR count(DISTINCT data->>'amount') <> 1) bad")" 0 "transfer sides match"
# every balance_after is the previous one plus or minus the amount
expect_eq "$(psql_q "SELECT count(*) FROM (SELECT event_type,
	(data->>'amount')::bigint AS amount,
	(data->>'balance_after')::bigint AS after,
	lag((data->>'balance_after')::bigint, 1, 0::bigint) OVER
		(PARTITION BY stream_id ORDER BY stream_version) AS before
	FROM events WHERE stream_id IN ('account-$X', 'account-$Y', 'account-$Z')
	AND event_type <> 'AccountOpened') e
	WHERE after <> before + CASE WHEN event_type IN
	('MoneyDeposited', 'TransferReceived') THEN amount ELSE -amount END")" \
	0 "balances follow the amounts"

say "no deadlock or serialization failure reached a client or the log"
for log in "$TEST_TMP/CMD.log" "$TEST_TMP/CMD2.log"; do
	# sqlstates as es_db logs them (ids in the log are random hex, so a
	# bare 40001 could match a correlation id)
	! grep -q '"sqlstate":"40P01"\|"sqlstate":"40001"\|deadlock detected\|could not serialize' "$log" ||
		fail "$log mentions a deadlock or serialization failure"
	! grep -q '"status":5[0-9][0-9]' "$log" || fail "$log has a 5xx"
done

say "SIGTERM: a clean exit (leak checks run under SANITIZE=1)"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
expect_eq "$(stop_pid "$CMD2_PID")" 0 "exit status of CMD2"
