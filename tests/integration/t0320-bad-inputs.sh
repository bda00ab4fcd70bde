#!/usr/bin/env bash
# t0320-bad-inputs.sh - every case of tests/data/commands (the cases that
# tests/unit/check_cmd_parse.c runs against the parsers) POSTed to the
# real command service: the status, and for a 422 the set of
# .errors[].field, must be what the case's `error` file says; "ok" cases
# must be 201. Per-account routes use a freshly opened account unless the
# case has a `path_id`; "append" cases use the stream `path_id`, else a
# stream of their own. Transfers run between two accounts opened first
# with the ids the data uses.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

DATA=$TANDEM_ROOT/tests/data/commands
A=11111111-1111-4111-8111-111111111111
B=22222222-2222-4222-8222-222222222222

[ -d "$DATA" ] || fail "no data directory '$DATA'"

migrate_db
start_service CMD command-service DB_POOL_SIZE=4

# uri TEXT: TEXT percent-encoded as one path segment (bytes, no jq: this
# runs for every case)
uri()
{
	local LC_ALL=C s=$1 out='' c i

	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case $c in
		[A-Za-z0-9._~-]) out+=$c ;;
		*) out+=$(printf '%%%02X' "'$c") ;;
		esac
	done
	printf '%s\n' "$out"
}

# open_account [ID]: open an EUR account with a large overdraft, print its id
open_account()
{
	local body='{"owner": "t0320", "currency": "EUR", "overdraft_limit": 1000000000000'

	[ -z "${1:-}" ] || body+=", \"account_id\": \"$1\""
	http POST "$CMD_URL/accounts" "$body}"
	expect_status 201
	jq -r .account_id <<<"$HTTP_BODY"
}

say "opening the transfer accounts"
expect_eq "$(open_account "$A")" "$A" "account A"
expect_eq "$(open_account "$B")" "$B" "account B"
for _ in 1 2 3; do
	http POST "$CMD_URL/accounts/$A/deposits" '{"amount": 1000000000000}'
	expect_status 201
done

ncases=0
failures=()

# bad CASE MESSAGE: record a mismatch and go on with the other cases
bad()
{
	failures+=("$1: $2")
	printf 'MISMATCH %s: %s\n' "$1" "$2" >&2
}

for dir in "$DATA"/*/*/; do
	dir=${dir%/}
	name=${dir#"$DATA"/}
	cmd=${name%%/*}
	if [ ! -f "$dir/input" ] || [ ! -f "$dir/error" ]; then
		fail "$name: no input or error file"
	fi
	mapfile -t expected <"$dir/error"
	want=${expected[0]}
	want_fields=$(printf '%s\n' "${expected[@]:1}" | sed '/^$/d' | sort)
	path_id=
	has_path_id=0
	if [ -f "$dir/path_id" ]; then
		path_id=$(cat "$dir/path_id")
		has_path_id=1
	fi
	case $cmd in
	open) path=/accounts ;;
	deposit | withdraw | close | overdraft-limit)
		[ "$has_path_id" -eq 1 ] || path_id=$(open_account)
		case $cmd in
		deposit) path=/accounts/$(uri "$path_id")/deposits ;;
		withdraw) path=/accounts/$(uri "$path_id")/withdrawals ;;
		close) path=/accounts/$(uri "$path_id")/close ;;
		overdraft-limit)
			path=/accounts/$(uri "$path_id")/overdraft-limit
			;;
		esac
		;;
	transfer) path=/transfers ;;
	append)
		[ "$has_path_id" -eq 1 ] || path_id=t0320-${name##*/}
		path=/streams/$(uri "$path_id")/events
		;;
	*) fail "$name: unknown command '$cmd'" ;;
	esac

	# the body byte for byte, as the unit test reads it
	http POST "$CMD_URL$path" "" --data-binary "@$dir/input" \
		-H 'Content-Type: application/json'
	ncases=$((ncases + 1))

	if [ "$want" = ok ]; then
		[ "$HTTP_STATUS" = 201 ] ||
			bad "$name" "expected 201, got $HTTP_STATUS: $HTTP_BODY"
		continue
	fi
	if [ "$HTTP_STATUS" != "$want" ]; then
		bad "$name" "expected $want, got $HTTP_STATUS: $HTTP_BODY"
		continue
	fi
	ctype=$(header Content-Type)
	[ "$ctype" = application/problem+json ] ||
		bad "$name" "Content-Type '$ctype', not application/problem+json"
	# one jq run: the status, whether every problem has a message, then
	# the fields
	summary=$(jq -r '.status, ([.errors[]? | .message | length > 0] |
		all), (.errors[]?.field)' <<<"$HTTP_BODY") ||
		summary="(not JSON)"
	[ "${summary%%$'\n'*}" = "$want" ] ||
		bad "$name" "problem .status is not $want: $HTTP_BODY"
	if [ "$want" = 422 ]; then
		got_fields=$(tail -n +3 <<<"$summary" | sort)
		[ "$got_fields" = "$want_fields" ] ||
			bad "$name" "fields [${got_fields//$'\n'/ }], expected [${want_fields//$'\n'/ }]: $HTTP_BODY"
		[ "$(sed -n 2p <<<"$summary")" = true ] ||
			bad "$name" "a field problem without a message: $HTTP_BODY"
	fi
done

say "$ncases cases sent"
[ "$ncases" -ge 40 ] || fail "only $ncases cases under $DATA"
if [ "${#failures[@]}" -gt 0 ]; then
	printf '%s\n' "${failures[@]}" >&2
	fail "${#failures[@]} of $ncases cases did not get the expected answer"
fi

# Refused commands stored nothing: A holds its opening, three deposits and
# one TransferSent per "ok" transfer case, B the matching receipts, and
# the streams of refused raw appends stay empty.
say "no event from a refused case"
ntransfers=$(grep -lx ok "$DATA"/transfer/*/error | wc -l)
expect_eq "$(psql_q "SELECT string_agg(event_type, ' ' ORDER BY stream_version)
	FROM events WHERE stream_id = 'account-$A'")" \
	"AccountOpened$(printf ' MoneyDeposited%.0s' 1 2 3)$(printf \
		' TransferSent%.0s' $(seq "$ntransfers"))" "events of account A"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE stream_id = 'account-$B' AND event_type = 'TransferReceived'")" \
	"$ntransfers" "transfers received by account B"
expect_eq "$(psql_q "SELECT count(*) FROM events WHERE stream_id IN
	('orders-1', 'orders 1', 'account-x', 'Account-$A',
	'Transfer-33333333-3333-4333-8333-333333333333')")" 0 \
	"events in the streams of refused appends"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE stream_id LIKE 'orders-ok-%'")" 5 \
	"events of the append cases that are ok"
