#!/usr/bin/env bash
# t0300-accounts.sh - the account commands through HTTP (SPEC sections 4,
# 5 and 7): every route, every rule, the answers' bodies and headers, and
# the events they store (types, versions, payloads, metadata).
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service CMD command-service MAX_BODY_BYTES=4096 DB_POOL_SIZE=4

POS_RE='^[0-9]+\.[0-9]+$'

post()
{
	local path=$1 body=$2

	shift 2
	http POST "$CMD_URL$path" "$body" "$@"
}

# expect_problem STATUS DETAIL_REGEX: a problem+json answer
expect_problem()
{
	expect_status "$1"
	expect_header Content-Type application/problem+json
	expect_json .status "$1"
	[[ $(jq -r .detail <<<"$HTTP_BODY") =~ $2 ]] ||
		fail "detail does not match '$2': $HTTP_BODY"
}

# the events of a stream as "version:type:data" lines
stream()
{
	psql_q "SELECT stream_version || ':' || event_type || ':' || data::text
		FROM events WHERE stream_id = 'account-$1' ORDER BY stream_version"
}

nevents()
{
	psql_q "SELECT count(*) FROM events"
}

say "open an account with a generated id"
post /accounts '{"owner":"Ann Smith","currency":"EUR"}'
expect_status 201
expect_header Content-Type application/json
A=$(jq -r .account_id <<<"$HTTP_BODY")
[[ $A =~ $UUID_RE ]] || fail "account_id '$A' is not a UUID"
expect_json .version 1
[[ $(jq -r .position <<<"$HTTP_BODY") =~ $POS_RE ]] || fail "position: $HTTP_BODY"
expect_json 'keys | sort | join(",")' account_id,position,version
expect_header Location "/accounts/$A"
expect_header ETag '"1"'
[[ $(header X-Correlation-Id) =~ $UUID_RE ]] ||
	fail "no generated X-Correlation-Id: $HTTP_HEADERS"
expect_eq "$(stream "$A")" \
	"1:AccountOpened:{\"owner\": \"Ann Smith\", \"currency\": \"EUR\", \"account_id\": \"$A\", \"overdraft_limit\": 0}" \
	"AccountOpened stored"

say "open with a given id (any case), an overdraft limit and UTF-8"
B=5a1b2c3d-0000-4000-8000-00000000000b
post /accounts "{\"owner\":\"Zoë Ørsted\",\"currency\":\"EUR\",\"overdraft_limit\":500,\"account_id\":\"${B^^}\"}"
expect_status 201
expect_json .account_id "$B"
expect_header Location "/accounts/$B"
expect_eq "$(psql_q "SELECT data->>'owner' || '|' || (data->>'overdraft_limit')
	FROM events WHERE stream_id = 'account-$B'")" "Zoë Ørsted|500" "owner, limit"
n=$(nevents)
post /accounts "{\"owner\":\"Other\",\"currency\":\"USD\",\"account_id\":\"$B\"}"
expect_problem 409 "already exists"
expect_eq "$(nevents)" "$n" "a refused open stores nothing"

say "deposit and withdraw"
post "/accounts/$A/deposits" '{"amount":1000,"reference":"salary"}'
expect_status 201
expect_json 'keys | sort | join(",")' account_id,balance,position,version
expect_json .account_id "$A"
expect_json .version 2
expect_json .balance 1000
expect_header ETag '"2"'
! has_header Location || fail "a deposit has no Location"
post "/accounts/$A/withdrawals" '{"amount":300}'
expect_status 201
expect_json .version 3
expect_json .balance 700
expect_header ETag '"3"'
expect_eq "$(stream "$A" | tail -n 2)" \
	'2:MoneyDeposited:{"amount": 1000, "currency": "EUR", "reference": "salary", "balance_after": 1000}
3:MoneyWithdrawn:{"amount": 300, "currency": "EUR", "balance_after": 700}' "money events"

say "insufficient funds, with and without an overdraft"
n=$(nevents)
post "/accounts/$A/withdrawals" '{"amount":701}'
expect_problem 409 "insufficient funds"
post "/accounts/$B/withdrawals" '{"amount":500}'
expect_status 201
expect_json .balance -500
post "/accounts/$B/withdrawals" '{"amount":1}'
expect_problem 409 "insufficient funds"
expect_eq "$(nevents)" "$((n + 1))" "refused withdrawals store nothing"

say "unknown accounts are 404"
U=00000000-0000-4000-8000-000000000000
for p in deposits withdrawals; do
	post "/accounts/$U/$p" '{"amount":1}'
	expect_problem 404 "does not exist"
done
post "/accounts/$U/close" '{}'
expect_problem 404 "does not exist"
post "/accounts/not-a-uuid/deposits" '{"amount":1}'
expect_problem 404 "does not exist"
post /transfers "{\"from\":\"$A\",\"to\":\"$U\",\"amount\":1}"
expect_problem 404 "does not exist"
post /transfers "{\"from\":\"$U\",\"to\":\"$A\",\"amount\":1}"
expect_problem 404 "does not exist"

say "transfers"
post /accounts '{"owner":"Carl","currency":"EUR"}'
C=$(jq -r .account_id <<<"$HTTP_BODY")
post /accounts '{"owner":"Dan","currency":"USD"}'
D=$(jq -r .account_id <<<"$HTTP_BODY")
post /transfers "{\"from\":\"$A\",\"to\":\"$C\",\"amount\":200,\"reference\":\"rent\"}"
expect_status 201
expect_json 'keys | sort | join(",")' from_version,position,to_version,transfer_id
T=$(jq -r .transfer_id <<<"$HTTP_BODY")
[[ $T =~ $UUID_RE ]] || fail "transfer_id: $HTTP_BODY"
expect_json .from_version 4
expect_json .to_version 2
[[ $(jq -r .position <<<"$HTTP_BODY") =~ $POS_RE ]] || fail "position: $HTTP_BODY"
expect_eq "$(stream "$A" | tail -n 1)" \
	"4:TransferSent:{\"amount\": 200, \"currency\": \"EUR\", \"reference\": \"rent\", \"transfer_id\": \"$T\", \"balance_after\": 500, \"to_account_id\": \"$C\"}" \
	"TransferSent"
expect_eq "$(stream "$C" | tail -n 1)" \
	"2:TransferReceived:{\"amount\": 200, \"currency\": \"EUR\", \"reference\": \"rent\", \"transfer_id\": \"$T\", \"balance_after\": 200, \"from_account_id\": \"$A\"}" \
	"TransferReceived"
expect_eq "$(psql_q "SELECT count(DISTINCT transaction_id) FROM events
	WHERE data->>'transfer_id' = '$T'")" 1 "both sides in one transaction"
TID=7e57a11d-0000-4000-8000-0000000000aa
post /transfers "{\"from\":\"$C\",\"to\":\"$A\",\"amount\":50,\"transfer_id\":\"$TID\"}"
expect_status 201
expect_json .transfer_id "$TID"
n=$(nevents)
post /transfers "{\"from\":\"$A\",\"to\":\"$D\",\"amount\":1}"
expect_problem 409 "currency mismatch"
post /transfers "{\"from\":\"$A\",\"to\":\"$C\",\"amount\":551}"
expect_problem 409 "insufficient funds"
post /transfers "{\"from\":\"$A\",\"to\":\"$A\",\"amount\":1}"
expect_problem 422 ""
expect_json '.errors[0].field' to
# the overdraft counts for transfers too
post /transfers "{\"from\":\"$B\",\"to\":\"$C\",\"amount\":1}"
expect_problem 409 "insufficient funds"
expect_eq "$(nevents)" "$n" "refused transfers store nothing"

say "close"
post "/accounts/$A/close" '{}'
expect_problem 409 "balance is 550"
post "/accounts/$A/withdrawals" '{"amount":550}'
expect_status 201
expect_json .balance 0
post "/accounts/$A/close" '{}'
expect_status 201
expect_json 'keys | sort | join(",")' account_id,position,version
expect_json .version 7
expect_header ETag '"7"'
expect_eq "$(stream "$A" | tail -n 1)" "7:AccountClosed:{}" "AccountClosed"
n=$(nevents)
post "/accounts/$A/deposits" '{"amount":1}'
expect_problem 409 "is closed"
post "/accounts/$A/withdrawals" '{"amount":1}'
expect_problem 409 "is closed"
post "/accounts/$A/close" '{}'
expect_problem 409 "is closed"
post /transfers "{\"from\":\"$C\",\"to\":\"$A\",\"amount\":1}"
expect_problem 409 "is closed"
post /transfers "{\"from\":\"$A\",\"to\":\"$C\",\"amount\":1}"
expect_problem 409 "is closed"
expect_eq "$(nevents)" "$n" "nothing stored for a closed account"

say "versions are 1..N without gaps in every stream"
expect_eq "$(psql_q "SELECT count(*) FROM (SELECT stream_id FROM events
	GROUP BY stream_id HAVING min(stream_version) <> 1
	OR max(stream_version) <> count(*)) g")" 0 "gap-free versions"

say "wrong method, media type, size, JSON and fields"
http GET "$CMD_URL/accounts"
expect_problem 405 ""
expect_header Allow POST
http GET "$CMD_URL/accounts/$C/deposits"
expect_status 405
post "/accounts/$C/deposits" '{"amount":1}' -H 'Content-Type: text/plain'
expect_problem 415 ""
post "/accounts/$C/deposits" '{"amount":1}' -H 'Content-Type: application/json; charset=utf-8'
expect_status 201
big=$(printf '{"amount":1,"reference":"%04100d"}' 0)
post "/accounts/$C/deposits" "$big"
expect_problem 413 ""
post "/accounts/$C/deposits" '{"amount":'
expect_problem 400 ""
post "/accounts/$C/deposits" '[1]'
expect_problem 400 ""
n=$(nevents)
for bad in 1.5 '"10"' 1e3 -5 0 1000000000001; do
	post "/accounts/$C/deposits" "{\"amount\":$bad}"
	expect_problem 422 ""
	expect_json '.errors[0].field' amount
done
post /accounts '{"owner":"","currency":"eur","overdraft_limit":-1}'
expect_problem 422 ""
expect_json '[.errors[].field] | sort | join(",")' currency,overdraft_limit,owner
expect_eq "$(nevents)" "$n" "invalid commands store nothing"
post /nowhere '{}'
expect_problem 404 ""

say "metadata: correlation id echoed, causation, principal (the token's, never X-Principal), traceparent"
TP=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
post "/accounts/$C/deposits" '{"amount":5}' -H 'X-Correlation-Id: corr-42' \
	-H 'X-Causation-Id: cause-7' -H 'X-Principal: alice' \
	-H "traceparent: $TP"
expect_status 201
expect_header X-Correlation-Id corr-42
v=$(jq -r .version <<<"$HTTP_BODY")
meta=$(psql_q "SELECT metadata::text FROM events
	WHERE stream_id = 'account-$C' AND stream_version = $v")
expect_eq "$(jq -r .correlation_id <<<"$meta")" corr-42 "correlation_id"
expect_eq "$(jq -r .causation_id <<<"$meta")" cause-7 "causation_id"
expect_eq "$(jq -c .principal <<<"$meta")" \
	'{"iss":"https://tandem.test","sub":"tandem-test","roles":["holder","manager","auditor","service","operator"]}' \
	"principal: the verified token's, not the X-Principal header's"
expect_eq "$(jq -r .traceparent <<<"$meta")" "$TP" "traceparent"
[[ $(jq -r .command_id <<<"$meta") =~ $UUID_RE ]] || fail "command_id: $meta"

# a bad traceparent is not passed on; without the headers the ids are made up
for bad in 00-00000000000000000000000000000000-b7ad6b7169203331-01 \
	00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01 \
	01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 \
	00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01 junk; do
	post "/accounts/$C/deposits" '{"amount":1}' -H "traceparent: $bad"
	expect_status 201
	v=$(jq -r .version <<<"$HTTP_BODY")
	corr=$(header X-Correlation-Id)
	meta=$(psql_q "SELECT metadata::text FROM events
		WHERE stream_id = 'account-$C' AND stream_version = $v")
	expect_eq "$(jq -r 'has("traceparent")' <<<"$meta")" false \
		"traceparent '$bad' refused"
	expect_eq "$(jq -r .correlation_id <<<"$meta")" "$corr" \
		"generated correlation id echoed"
	expect_eq "$(jq -r .causation_id <<<"$meta")" \
		"$(jq -r .command_id <<<"$meta")" "causation defaults to command"
	expect_eq "$(jq -r .principal.sub <<<"$meta")" tandem-test \
		"the principal without the headers"
done
# an unusable correlation id is replaced
post "/accounts/$C/deposits" '{"amount":1}' -H "X-Correlation-Id: $(printf 'x%.0s' {1..129})"
expect_status 201
[[ $(header X-Correlation-Id) =~ $UUID_RE ]] || fail "long correlation id kept"
# errors echo it too
post "/accounts/$U/deposits" '{"amount":1}' -H 'X-Correlation-Id: corr-404'
expect_status 404
expect_header X-Correlation-Id corr-404
post "/accounts/$C/deposits" '{"amount":0}' -H 'X-Correlation-Id: corr-422'
expect_status 422
expect_header X-Correlation-Id corr-422

say "every account event carries the metadata"
expect_eq "$(psql_q "SELECT count(*) FROM events WHERE NOT (metadata ?& 
	ARRAY['command_id', 'correlation_id', 'causation_id'])")" 0 "metadata"
# command ids are time-ordered (version 7: the audit view's index on
# (sub, command_id) takes a principal's commands at its end); made one
# after another, they sort in log order by their first 48 bits, the ms
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE metadata->>'command_id' !~ '$UUID7_RE'")" \
	0 "command ids not of version 7"
expect_eq "$(psql_q "SELECT count(*) FROM (SELECT left(metadata->>'command_id',
	13) AS t, lag(left(metadata->>'command_id', 13)) OVER (ORDER BY
	global_position) AS p FROM events) s WHERE t < p")" 0 \
	"command ids out of log order"
expect_eq "$(psql_q "SELECT count(*) FROM events WHERE
	replace(left(metadata->>'command_id', 13), '-', '') < lpad(to_hex(
	(extract(epoch FROM recorded_at) * 1000)::bigint - 60000), 12, '0')")" 0 \
	"command ids whose time is over a minute before their event's"

say "the service is still well"
http GET "$CMD_URL/health"
expect_status 200

say "SIGTERM: a clean exit (leak checks run under SANITIZE=1)"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of CMD"
