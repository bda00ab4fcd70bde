#!/usr/bin/env bash
# t0640-audit-view.sh - GET /audit/principals/{sub}/actions: every command
# a principal caused, folded from the events' metadata (SPEC section 11).
#
# Commands are appended through the command service's own append
# functions (tandem_append(), and tandem_append_batch() for a group
# commit whose commands' events interleave), with metadata as the
# command service writes it, under the principals alice, bob and
# "carol|x@idp zoë" (a sub that needs percent-encoding); the query service
# projects with PROJECTOR_BATCH=2, so a command's events are split across
# batches and its row is completed by a later one.
#   1. Each principal's actions are exactly its commands: position (the
#      first event's), recorded_at, command and correlation ids, streams,
#      and each event's position, stream, version, type and amount; an
#      event without a command_id is a command of its own; the view
#      equals a fold of the events table.
#   2. Paging with limit 1, 2 and 3 walks the whole list, without gaps or
#      repeats; `after` is exclusive; `next` is null on the last page.
#   3. Bad input: after not a non-negative integer -> 400, limit out of
#      [1, 1000] -> 422 naming it (the statement route's conventions), a
#      sub over 256 bytes -> 404, all problem+json; a sub without
#      commands -> 200 and no items.
#   4. Metadata of odd shape (principal a string, a number, null, an
#      array, an object without sub, a sub that is empty, a number or 300
#      bytes long, no principal at all) is skipped: nothing parks, no
#      view stops, and the commands after them are listed. An opening
#      through the command service with a forged X-Principal header is
#      listed under its token's sub, not the header's.
#   5. /status and /metrics list the audit view; `query-service rebuild`
#      and `rebuild audit` give the same answers.
#   6. Commands sent through the command service under the tokens of a
#      holder and a manager are listed under their subs, with the
#      verified principal in the metadata; the route answers an auditor,
#      403 to a holder and a manager, 401 without a token.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/audit_lib.sh"

migrate_db
start_service CMD command-service
start_service QRY query-service POLL_INTERVAL_MS=50 PROJECTOR_BATCH=2

A=account-aaaaaaaa-0000-4000-8000-00000000000a
B=account-bbbbbbbb-0000-4000-8000-00000000000b
TR=transfer-cccccccc-0000-4000-8000-00000000000c
CAROL="carol|x@idp zoë"
C1=c0000000-0000-4000-8000-000000000001
C2=c0000000-0000-4000-8000-000000000002
C3=c0000000-0000-4000-8000-000000000003
C4=c0000000-0000-4000-8000-000000000004
C5=c0000000-0000-4000-8000-000000000005
C6=c0000000-0000-4000-8000-000000000006
C7=c0000000-0000-4000-8000-000000000007
C8=c0000000-0000-4000-8000-000000000008

# ev TYPE DATA META: one event of an append
ev()
{
	jq -cn --arg t "$1" --argjson d "$2" --argjson m "$3" \
		'{type: $t, data: $d, metadata: $m}'
}

# stream ID EVENTS...: one stream of an append, any version
stream()
{
	local id=$1

	shift
	printf '%s\n' "$@" | jq -cs --arg id "$id" \
		'{stream_id: $id, expected: -2, events: .}'
}

# wait until every view has passed what is in the log now
caught_up()
{
	local snap

	snap=$(psql_q "SELECT pg_current_snapshot()")
	http GET "$QRY_URL/audit/principals/x/actions" "" \
		-H "X-Min-Position: $snap" -H 'X-Wait-Ms: 10000'
	expect_status 200
}

say "1. commands of three principals"
# B opened without a principal: not listed
audit_append "[$(stream $B "$(ev AccountOpened \
	"{\"account_id\":\"${B#account-}\",\"owner\":\"Bo\",\"currency\":\"EUR\",\"overdraft_limit\":0}" \
	'{"command_id":"c0000000-0000-4000-8000-000000000000"}')")]" >/dev/null
M1=$(audit_meta alice $C1 corr-open)
P1=$(audit_append "[$(stream $A "$(ev AccountOpened \
	"{\"account_id\":\"${A#account-}\",\"owner\":\"Al\",\"currency\":\"EUR\",\"overdraft_limit\":0}" \
	"$M1")")]")
M2=$(audit_meta alice $C2 corr-dep)
P2=$(audit_append "[$(stream $A "$(ev MoneyDeposited \
	'{"amount":1500,"balance_after":1500,"currency":"EUR"}' "$M2")")]")
# a transfer: three streams in one command, written in stream_id order
M3=$(audit_meta bob $C3 corr-tr)
audit_append "[$(stream $A "$(ev TransferSent \
	'{"amount":700,"balance_after":800,"currency":"EUR","transfer_id":"cccccccc-0000-4000-8000-00000000000c","to_account_id":"bbbbbbbb-0000-4000-8000-00000000000b"}' \
	"$M3")"),$(stream $B "$(ev TransferReceived \
	'{"amount":700,"balance_after":700,"currency":"EUR","transfer_id":"cccccccc-0000-4000-8000-00000000000c","from_account_id":"aaaaaaaa-0000-4000-8000-00000000000a"}' \
	"$M3")"),$(stream $TR "$(ev TransferMade \
	'{"amount":700,"currency":"EUR"}' "$M3")")]" >/dev/null
# a group commit: bob's two-stream command and carol's, one statement
M4=$(audit_meta bob $C4 corr-4)
M5=$(audit_meta "$CAROL" $C5 corr-5)
expect_eq "$(audit_append_batch "[{\"i\":1,\"s\":[$(stream $A "$(ev MoneyWithdrawn \
	'{"amount":25,"balance_after":775,"currency":"EUR"}' "$M4")"),$(stream \
	orders-9 "$(ev OrderNoted '{"amount":99}' "$M4")" "$(ev OrderNoted \
	'{"n":2}' "$M4")")]},{\"i\":2,\"s\":[$(stream $B "$(ev MoneyDeposited \
	'{"amount":40,"balance_after":740,"currency":"EUR"}' "$M5")")]}]")" 2 \
	"commands of the batch appended"
# no command_id: each event a command of its own
M6='{"principal":{"sub":"alice"}}'
audit_append "[$(stream orders-9 "$(ev Note '{"amount":"12"}' "$M6")" \
	"$(ev Note '{}' "$M6")")]" >/dev/null
caught_up

expect_eq "$(psql_q "SELECT count(*) FROM events")" 12 "events appended"
audit_pages alice 1000 >"$TEST_TMP/alice"
audit_pages bob 1000 >"$TEST_TMP/bob"
audit_pages "$CAROL" 1000 >"$TEST_TMP/carol"
expect_eq "$(jq -c '[.position, .command_id, .correlation_id,
	[.events[] | [.type, .amount]]]' "$TEST_TMP/alice" | paste -sd' ')" \
	"[$P1,\"$C1\",\"corr-open\",[[\"AccountOpened\",null]]] [$P2,\"$C2\",\"corr-dep\",[[\"MoneyDeposited\",1500]]] [11,null,null,[[\"Note\",null]]] [12,null,null,[[\"Note\",null]]]" \
	"alice's actions"
expect_eq "$(jq -c '[.position, .command_id, .correlation_id, .streams,
	[.events[] | [.position, .stream, .version, .type, .amount]]]' \
	"$TEST_TMP/bob" | paste -sd' ')" \
	"[4,\"$C3\",\"corr-tr\",[\"$A\",\"$B\",\"$TR\"],[[4,\"$A\",3,\"TransferSent\",700],[5,\"$B\",2,\"TransferReceived\",700],[6,\"$TR\",1,\"TransferMade\",null]]] [$(psql_q "SELECT min(global_position) FROM events WHERE metadata->>'command_id' = '$C4'"),\"$C4\",\"corr-4\",[\"$A\",\"orders-9\"],[[7,\"$A\",4,\"MoneyWithdrawn\",25],[9,\"orders-9\",1,\"OrderNoted\",null],[10,\"orders-9\",2,\"OrderNoted\",null]]]" \
	"bob's actions"
expect_eq "$(jq -c '[.position, .command_id, .correlation_id, .streams,
	[.events[] | [.position, .type, .amount]]]' "$TEST_TMP/carol")" \
	"[8,\"$C5\",\"corr-5\",[\"$B\"],[[8,\"MoneyDeposited\",40]]]" \
	"carol's actions"
expect_eq "$(jq -r '.recorded_at' "$TEST_TMP/bob" | paste -sd' ')" \
	"$(psql_q "SELECT to_char(min(recorded_at) AT TIME ZONE 'UTC',
		'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM events
		WHERE metadata->'principal'->>'sub' = 'bob'
		GROUP BY metadata->>'command_id' ORDER BY min(global_position)" |
		paste -sd' ')" "bob's times"
cat "$TEST_TMP/alice" "$TEST_TMP/bob" "$TEST_TMP/carol" | audit_items_check
audit_fold_lines >"$TEST_TMP/fold"
audit_view_lines >"$TEST_TMP/view"
diff -u "$TEST_TMP/fold" "$TEST_TMP/view" >&2 ||
	fail "the view differs from the fold of the log"
expect_eq "$(grep -c . "$TEST_TMP/fold")" 7 "commands folded"
http GET "$QRY_URL/audit/principals/alice/actions"
expect_status 200
has_header X-Position || fail "no X-Position"
has_header ETag || fail "no ETag"
expect_header Content-Type application/json

say "2. paging walks the whole list"
more=$(for i in $(seq 1 7); do
	printf '{"i":%d,"s":[%s]}\n' "$i" "$(stream "orders-p$i" \
		"$(ev Paged '{"amount":1}' "$(audit_meta alice \
			"d0000000-0000-4000-8000-00000000000$i" "p$i")")")"
done | jq -cs .)
expect_eq "$(audit_append_batch "$more")" 7 "paged commands appended"
caught_up
audit_pages alice 1000 | jq -c .position >"$TEST_TMP/all"
expect_eq "$(grep -c . "$TEST_TMP/all")" 11 "alice's actions"
for limit in 1 2 3; do
	audit_pages alice $limit | jq -c .position >"$TEST_TMP/paged.$limit"
	diff -u "$TEST_TMP/all" "$TEST_TMP/paged.$limit" >&2 ||
		fail "pages of $limit differ from one page"
done
second=$(sed -n 2p "$TEST_TMP/all")
http GET "$QRY_URL/audit/principals/alice/actions?after=$second&limit=2"
expect_status 200
expect_json '[.items[].position] | map(tostring) | join(",")' \
	"$(sed -n '3,4p' "$TEST_TMP/all" | paste -sd,)"
expect_json .next "$(sed -n 4p "$TEST_TMP/all")"
http GET "$QRY_URL/audit/principals/alice/actions?after=$(tail -1 "$TEST_TMP/all")"
expect_status 200
expect_json '.items | length' 0
expect_json .next null
http GET "$QRY_URL/audit/principals/alice/actions?after=0&limit=1000"
expect_json '.items | length' 11
expect_json .next null

say "3. bad after, limit and sub"
for after in -1 abc 1.5 '' 0x10 1234567890123456789 '%201'; do
	http GET "$QRY_URL/audit/principals/alice/actions?after=$after"
	expect_status 400
	expect_header Content-Type application/problem+json
	expect_json .status 400
	expect_json .type https://tandem.dev/problems/malformed
done
for limit in 0 1001 -3 ten ''; do
	http GET "$QRY_URL/audit/principals/alice/actions?limit=$limit"
	expect_status 422
	expect_header Content-Type application/problem+json
	expect_json '.errors[0].field' limit
done
http GET "$QRY_URL/audit/principals/alice/actions?limit=1000"
expect_status 200
http GET "$QRY_URL/audit/principals/$(printf 'x%.0s' $(seq 1 257))/actions"
expect_status 404
expect_header Content-Type application/problem+json
http GET "$QRY_URL/audit/principals/%ff%fe/actions"
expect_status 404
http GET "$QRY_URL/audit/principals/nobody/actions"
expect_status 200
expect_json '.items | length' 0
expect_json .next null
http GET "$QRY_URL/audit/principals/alice/actions/x"
expect_status 404
http POST "$QRY_URL/audit/principals/alice/actions" '{}' \
	-H 'Content-Type: application/json'
expect_status 405

say "4. principals of odd shape are skipped; later commands are listed"
long=$(printf 's%.0s' $(seq 1 300))
n=0
for m in '{"principal":"alice"}' '{"principal":7}' '{"principal":null}' \
	'{"principal":["alice"]}' '{"principal":{"name":"alice"}}' \
	'{"principal":{"sub":""}}' '{"principal":{"sub":12}}' \
	"{\"principal\":{\"sub\":\"$long\"}}" '{"command_id":"c"}' '{}' \
	'{"principal":{"sub":{"sub":"alice"}}}' \
	'{"x":{"principal":{"sub":"alice"}}}'; do
	n=$((n + 1))
	audit_append "[$(stream $A "$(ev MoneyDeposited \
		"{\"amount\":$n,\"balance_after\":1,\"currency\":\"EUR\"}" \
		"$(jq -c --arg c "e0000000-0000-4000-8000-0000000000$((n + 10))" \
			'. + {command_id: (.command_id // $c)}' <<<"$m")")")]" \
		>/dev/null
done
# the command service itself, with an X-Principal header: ignored, the
# verified token's principal (lib.sh's tandem-test) is recorded instead
http POST "$CMD_URL/accounts" '{"owner":"Hd","currency":"EUR"}' \
	-H 'Content-Type: application/json' -H 'X-Principal: alice'
expect_status 201
M7=$(audit_meta bob $C7 corr-after)
P7=$(audit_append "[$(stream $B "$(ev MoneyWithdrawn \
	'{"amount":5,"balance_after":735,"currency":"EUR"}' "$M7")")]")
caught_up
http GET "$QRY_URL/audit/principals/bob/actions"
expect_json '.items[-1] | [.position, .command_id, .correlation_id,
	.events[0].amount] | map(tostring) | join(",")' "$P7,$C7,corr-after,5"
expect_json '.items | length' 3
http GET "$QRY_URL/audit/principals/alice/actions"
expect_json '.items | length' 11
http GET "$QRY_URL/audit/principals/tandem-test/actions"
expect_json '[.items[].events[].type] | join(",")' AccountOpened
http GET "$QRY_URL/audit/principals/$long/actions"
expect_status 404
expect_eq "$(psql_q "SELECT count(*) FROM parked_streams")" 0 "parked streams"
http GET "$QRY_URL/status"
expect_json '[.views[] | select(.name == "audit")] | length' 1
expect_json '[.views[] | .stopped] | any' false
expect_json '[.views[] | .parked | length] | add' 0
expect_json '.views[] | select(.name == "audit") | .lag_events' 0
audit_fold_lines >"$TEST_TMP/fold"
audit_view_lines >"$TEST_TMP/view"
diff -u "$TEST_TMP/fold" "$TEST_TMP/view" >&2 ||
	fail "the view differs from the fold of the log"
http GET "$QRY_URL/metrics"
N=$(psql_q "SELECT count(*) FROM events")
grep -q "^tandem_events_projected_total{view=\"audit\"} $N\$" <<<"$HTTP_BODY" ||
	fail "audit not projected in /metrics: $(grep projected_total <<<"$HTTP_BODY")"

# a command id used again by a later transaction (another appender): its
# event joins the command's row. Behind a new command in a window of two
# events, it goes in with the window's COPY, which the row already there
# undoes, and the window is merged instead.
M8=$(audit_meta alice $C8 corr-8)
P8=$(audit_append "[$(stream orders-7 "$(ev OrderNoted '{"n":1}' "$M8")" \
	"$(ev OrderNoted '{"n":2}' "$M2")")]")
caught_up
http GET "$QRY_URL/audit/principals/alice/actions"
expect_json '.items | length' 12
expect_json "[.items[] | select(.command_id == \"$C2\") | .position,
	(.events[] | .position, .type)] | map(tostring) | join(\",\")" \
	"$P2,$P2,MoneyDeposited,$P8,OrderNoted"
expect_json "[.items[] | select(.command_id == \"$C8\") | .position,
	(.events[] | .type)] | map(tostring) | join(\",\")" \
	"$((P8 - 1)),OrderNoted"
audit_fold_lines >"$TEST_TMP/fold"
audit_view_lines >"$TEST_TMP/view"
diff -u "$TEST_TMP/fold" "$TEST_TMP/view" >&2 ||
	fail "the view differs from the fold of the log"

say "5. a rebuild gives the same answers"
for who in alice bob "$CAROL"; do
	audit_pages "$who" 2
done >"$TEST_TMP/before"
"$TANDEM_BIN/query-service" rebuild 2>>"$TEST_TMP/rebuild.log" ||
	fail "rebuild failed: $(tail -5 "$TEST_TMP/rebuild.log")"
for who in alice bob "$CAROL"; do
	audit_pages "$who" 2
done >"$TEST_TMP/after"
diff -u "$TEST_TMP/before" "$TEST_TMP/after" >&2 ||
	fail "the rebuild changed the answers"
"$TANDEM_BIN/query-service" rebuild audit 2>>"$TEST_TMP/rebuild.log" ||
	fail "rebuild audit failed: $(tail -5 "$TEST_TMP/rebuild.log")"
for who in alice bob "$CAROL"; do
	audit_pages "$who" 3
done >"$TEST_TMP/after"
diff -u "$TEST_TMP/before" "$TEST_TMP/after" >&2 ||
	fail "the rebuild of audit changed the answers"
grep -q '"event":"rebuild_swapped","view":"audit"' "$TEST_TMP/rebuild.log" ||
	fail "no rebuild of the audit view in the log"
expect_eq "$(psql_q "SELECT count(*) FROM pg_class
	WHERE relname LIKE 'view\\_audit%' AND relkind IN ('r', 'i')")" 3 \
	"view_audit, its key and its command index, no shadow"
# the live projector goes on after the swap
M8=$(audit_meta "$CAROL" c0000000-0000-4000-8000-000000000008 corr-8)
audit_append "[$(stream $A "$(ev MoneyDeposited \
	'{"amount":8,"balance_after":9,"currency":"EUR"}' "$M8")")]" >/dev/null
caught_up
http GET "$QRY_URL/audit/principals/$(_audit_seg "$CAROL")/actions"
expect_json '[.items[].correlation_id] | join(",")' corr-5,corr-8
expect_eq "$(stop_pid "$QRY_PID")" 0 "exit status of QRY"

say "6. commands under tokens; the route is the auditor's"
start_service QRY query-service POLL_INTERVAL_MS=50
ANN=$(mint ann holder)
MAX=$(mint max manager)
AUD=$(mint aud auditor)
AS=$ANN http POST "$CMD_URL/accounts" '{"owner":"ann","currency":"EUR"}' \
	-H 'X-Correlation-Id: ann-open'
expect_status 201
ANN_ACC=$(jq -r .account_id <<<"$HTTP_BODY")
AS=$ANN http POST "$CMD_URL/accounts/$ANN_ACC/deposits" '{"amount":300}' \
	-H 'X-Correlation-Id: ann-dep'
expect_status 201
AS=$MAX http POST "$CMD_URL/accounts" '{"owner":"Bea","currency":"EUR"}' \
	-H 'X-Correlation-Id: max-open'
expect_status 201
MAX_ACC=$(jq -r .account_id <<<"$HTTP_BODY")
AS=$MAX http POST "$CMD_URL/accounts/$ANN_ACC/deposits" '{"amount":50}' \
	-H 'X-Correlation-Id: max-dep'
expect_status 201
AS=$ANN http POST "$CMD_URL/transfers" \
	"{\"from\":\"$ANN_ACC\",\"to\":\"$MAX_ACC\",\"amount\":100}" \
	-H 'X-Correlation-Id: ann-tr'
expect_status 201
TOKEN=$(jq -r .position <<<"$HTTP_BODY")
AS=$AUD http GET "$QRY_URL/audit/principals/ann/actions" "" \
	-H "X-Min-Position: $TOKEN" -H 'X-Wait-Ms: 10000'
expect_status 200
# a transfer's events are stored in stream_id order, which depends on
# the random account ids: compare them as a set, and their positions
# against the log below
expect_json '[.items[] | [.correlation_id, (.events | sort_by(.type)
	| map(.type, .amount) | map(tostring) | join(" "))] | join(":")]
	| join(",")' \
	"ann-open:AccountOpened null,ann-dep:MoneyDeposited 300,ann-tr:TransferMade null TransferReceived 100 TransferSent 100"
expect_json '[.items[-1].events[].position] | map(tostring) | join(",")' \
	"$(psql_q "SELECT global_position FROM events
		WHERE metadata->>'correlation_id' = 'ann-tr'
		ORDER BY 1" | paste -sd,)"
expect_json '[.items[].position] | map(tostring) | join(",")' \
	"$(psql_q "SELECT min(global_position) FROM events
		WHERE metadata->'principal'->>'sub' = 'ann'
		GROUP BY metadata->>'command_id' ORDER BY 1" | paste -sd,)"
AS=$AUD http GET "$QRY_URL/audit/principals/max/actions" "" \
	-H "X-Min-Position: $TOKEN"
expect_json '[.items[] | .correlation_id + ":" + .events[0].type]
	| join(",")' "max-open:AccountOpened,max-dep:MoneyDeposited"
expect_json '.items[1].streams | join(",")' "account-$ANN_ACC"
expect_eq "$(psql_q "SELECT DISTINCT metadata->'principal' FROM events
	WHERE metadata->'principal'->>'sub' = 'ann'" | jq -c .)" \
	'{"iss":"https://tandem.test","sub":"ann","roles":["holder"]}' \
	"ann's events record the verified principal"
audit_fold_lines >"$TEST_TMP/fold"
audit_view_lines >"$TEST_TMP/view"
diff -u "$TEST_TMP/fold" "$TEST_TMP/view" >&2 ||
	fail "the view differs from the fold of the log"
for who in "$ANN" "$MAX"; do
	AS=$who http GET "$QRY_URL/audit/principals/ann/actions"
	expect_status 403
	expect_header Content-Type application/problem+json
done
AS=none http GET "$QRY_URL/audit/principals/ann/actions"
expect_status 401
expect_eq "$(stop_pid "$QRY_PID")" 0 "exit status of QRY"
