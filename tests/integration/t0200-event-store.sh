#!/usr/bin/env bash
# t0200-event-store.sh - common/es_append.c and es_read.c against a real
# database (SPEC 3), each append as the one request of an
# es_append_batch() call, as the command service makes them: expected
# versions, atomic multi-stream appends, idempotent retries by event id,
# input validation, reading a stream, the append token and whether a
# later read covers it; races between two connections; an append whose
# commit fails; the group roles' rights to append.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

MIGRATIONS_DIR=$TANDEM_ROOT/migrations migrate_db "$DATABASE_URL"
SC=$TANDEM_BUILD/tests/store_check
[ -x "$SC" ] || fail "no $SC: build it with make"

# sc ARGS...: run store_check; its "error ..." outcome (exit 2) is an
# answer to compare, a failed check (exit 1) fails the test.
sc()
{
	"$SC" "$@" || [ $? -eq 2 ]
}

# expect_sc EXPECTED ARGS...: store_check's output must be EXPECTED
expect_sc()
{
	local want=$1 got

	shift
	got=$(sc "$@") || fail "store_check $* failed"
	expect_eq "$got" "$want" "store_check $*"
}

count()
{
	psql_q "SELECT count(*) FROM events WHERE stream_id = '$1'"
}

E1='[{"type":"Opened","data":{"owner":"ann"},"metadata":{"by":"t0200"}},{"type":"Deposited","data":{"amount":5}}]'
ONE='[{"type":"Deposited","data":{"amount":1}}]'

say "a new stream, then exact versions"
out=$(sc append acct-1 no_stream "$E1")
[[ $out =~ ^ok\ 2\ ([0-9]+\.[0-9]+)$ ]] || fail "first append: '$out'"
token=${BASH_REMATCH[1]}
expect_eq "$token" "$(psql_q "SELECT transaction_id || '.' ||
	max(global_position) FROM events WHERE stream_id = 'acct-1'
	GROUP BY transaction_id")" "the token is the xid and last position"
expect_eq "$(psql_q "SELECT string_agg(stream_version || ':' || event_type
	|| ':' || data::text || ':' || metadata::text, ','
	ORDER BY global_position) FROM events WHERE stream_id = 'acct-1'")" \
	'1:Opened:{"owner": "ann"}:{"by": "t0200"},2:Deposited:{"amount": 5}:{}' \
	"stored events"
out=$(sc append acct-1 2 "$ONE")
[[ $out =~ ^ok\ 3\ [0-9]+\.[0-9]+$ ]] || fail "append at 2: '$out'"
expect_sc 3 version acct-1
expect_sc 0 version no-such-stream

say "stale, future and no_stream expectations conflict"
expect_sc "error ECONFLICT 3 stream 'acct-1' is at version 3, expected 1" \
	append acct-1 1 "$ONE"
expect_sc "error ECONFLICT 3 stream 'acct-1' is at version 3, expected 7" \
	append acct-1 7 "$ONE"
expect_sc "error ECONFLICT 3 stream 'acct-1' is at version 3, expected 0" \
	append acct-1 no_stream "$ONE"
expect_sc "error ECONFLICT 3 stream 'acct-1' is at version 3, expected 0" \
	append acct-1 0 "$ONE"
expect_sc "error ECONFLICT 0 stream 'acct-new' is at version 0, expected 4" \
	append acct-new 4 "$ONE"
expect_eq "$(count acct-1)" 3 "conflicts stored nothing"
expect_eq "$(count acct-new)" 0 "conflicts stored nothing"

say "any, and 0 on a new stream"
[[ $(sc append acct-1 any "$ONE") =~ ^ok\ 4\  ]] || fail "any on acct-1"
[[ $(sc append acct-2 any "$ONE") =~ ^ok\ 1\  ]] || fail "any on acct-2"
[[ $(sc append acct-3 0 "$ONE") =~ ^ok\ 1\  ]] || fail "0 on acct-3"

say "multi-stream appends are all or nothing"
before=$(psql_q "SELECT count(*) FROM events")
expect_sc "error ECONFLICT 1 stream 'acct-2' is at version 1, expected 5" \
	append acct-1 4 "$E1" acct-2 5 "$ONE"
expect_sc "error ECONFLICT 4 stream 'acct-1' is at version 4, expected 3" \
	append acct-1 3 "$E1" acct-2 1 "$ONE"
expect_sc "error ECONFLICT 0 stream 'acct-9' is at version 0, expected 2" \
	append acct-2 1 "$ONE" acct-9 2 "$ONE" acct-1 4 "$ONE"
expect_eq "$(psql_q "SELECT count(*) FROM events")" "$before" \
	"a failed multi-stream append stored something"
out=$(sc append acct-1 4 "$E1" acct-4 no_stream "$ONE" acct-2 any "$ONE")
[[ $out =~ ^ok\ 6\ 1\ 2\ ([0-9]+)\.([0-9]+)$ ]] || fail "multi: '$out'"
xid=${BASH_REMATCH[1]} pos=${BASH_REMATCH[2]}
expect_eq "$(psql_q "SELECT count(*), count(DISTINCT transaction_id),
	min(transaction_id::text), max(global_position) FROM events
	WHERE global_position > (SELECT max(global_position) - 4 FROM events)")" \
	"4|1|$xid|$pos" "one transaction wrote the four events"
expect_eq "$(psql_q "SELECT count(*) FROM events")" "$((before + 4))" \
	"multi-stream append stored its four events"

say "a retry with the same event ids stores nothing twice"
ID1=11111111-1111-4111-8111-111111111111
ID2=22222222-2222-4222-8222-222222222222
ID3=33333333-3333-4333-8333-333333333333
R1="[{\"type\":\"Paid\",\"data\":{},\"event_id\":\"$ID1\"},{\"type\":\"Paid\",\"data\":{},\"event_id\":\"$ID2\"}]"
R2="[{\"type\":\"Paid\",\"data\":{},\"event_id\":\"$ID3\"}]"
first=$(sc append pay-1 no_stream "$R1" pay-2 no_stream "$R2")
[[ $first =~ ^ok\ 2\ 1\ [0-9]+\.[0-9]+$ ]] || fail "first attempt: '$first'"
[[ $(sc append pay-1 2 "$ONE") =~ ^ok\ 3\  ]] || fail "a later append"
expect_sc "$first" append pay-1 no_stream "$R1" pay-2 no_stream "$R2"
expect_sc "$first" append pay-1 any "$R1" pay-2 any "$R2"
# event ids are UUIDs: case does not matter
expect_sc "$first" append pay-1 no_stream "${R1//$ID1/${ID1^^}}" \
	pay-2 no_stream "$R2"
expect_eq "$(count pay-1)|$(count pay-2)" "3|1" "retries stored nothing"
expect_eq "$(psql_q "SELECT count(*) FROM events
	WHERE event_id IN ('$ID1', '$ID2', '$ID3')")" 3 "each id once"
expect_sc "error ECONFLICT -1 event '$ID1' is already stored in stream 'pay-1' at version 1, by another append" \
	append other-1 any "$R1"
expect_sc "error ECONFLICT -1 event '$ID3' is already stored in stream 'pay-2' at version 1, by another append" \
	append pay-2 any "[{\"type\":\"Paid\",\"data\":{}},{\"type\":\"Paid\",\"data\":{},\"event_id\":\"$ID3\"}]"
expect_sc "error ECONFLICT -1 event '$ID2' is already stored in stream 'pay-1' at version 2, by another append" \
	append pay-1 any "[{\"type\":\"Paid\",\"data\":{},\"event_id\":\"$ID2\"},{\"type\":\"Paid\",\"data\":{},\"event_id\":\"$ID1\"}]"
expect_sc "error ECONFLICT -1 event '$ID1' is already stored in stream 'pay-1' at version 1, by another append" \
	append pay-1 any "$R1" pay-3 any "$ONE"
expect_sc "error ECONFLICT -1 event '$ID1' is already stored in stream 'pay-1' at version 1, by another append" \
	append pay-1 any "$R1" pay-2 any \
	"[{\"type\":\"Paid\",\"data\":{},\"event_id\":\"44444444-4444-4444-8444-444444444444\"}]"
expect_eq "$(count pay-1)|$(count pay-2)|$(count other-1)|$(count pay-3)" \
	"3|1|0|0" "refused retries stored nothing"

say "bad input is refused before the database"
before=$(psql_q "SELECT count(*) FROM events")
long=$(printf 'x%.0s' $(seq 201))
while IFS='|' read -r stream expected events want; do
	[ -n "$stream" ] || continue
	[ "$stream" != '<empty>' ] || stream=
	[ "$stream" != '<long>' ] || stream=$long
	[ "$stream" != '<latin1>' ] || stream=$'caf\xe9'
	expect_sc "$want" append "$stream" "$expected" "$events"
done <<'EOF'
<empty>|any|[{"type":"T","data":{}}]|error EINVALID -1 one or more fields are invalid [{"field":"stream_id","message":"must be 1 to 200 characters of UTF-8"}]
<long>|any|[{"type":"T","data":{}}]|error EINVALID -1 one or more fields are invalid [{"field":"stream_id","message":"must be 1 to 200 characters of UTF-8"}]
<latin1>|any|[{"type":"T","data":{}}]|error EINVALID -1 one or more fields are invalid [{"field":"stream_id","message":"must be 1 to 200 characters of UTF-8"}]
s|-3|[{"type":"T","data":{}}]|error EINVALID -1 one or more fields are invalid [{"field":"expected_version","message":"must be \"any\", \"no_stream\" or a version >= 0"}]
s|any|[]|error EINVALID -1 one or more fields are invalid [{"field":"events","message":"must be a non-empty array"}]
s|any|{"type":"T","data":{}}|error EINVALID -1 one or more fields are invalid [{"field":"events","message":"must be a non-empty array"}]
s|any|[1]|error EINVALID -1 one or more fields are invalid [{"field":"events[0]","message":"must be an object"}]
s|any|[{"data":{}}]|error EINVALID -1 one or more fields are invalid [{"field":"events[0].type","message":"must be a string of 1 to 200 characters"}]
s|any|[{"type":"","data":{}}]|error EINVALID -1 one or more fields are invalid [{"field":"events[0].type","message":"must be a string of 1 to 200 characters"}]
s|any|[{"type":7,"data":{}}]|error EINVALID -1 one or more fields are invalid [{"field":"events[0].type","message":"must be a string of 1 to 200 characters"}]
s|any|[{"type":"T"}]|error EINVALID -1 one or more fields are invalid [{"field":"events[0].data","message":"must be an object"}]
s|any|[{"type":"T","data":[1]}]|error EINVALID -1 one or more fields are invalid [{"field":"events[0].data","message":"must be an object"}]
s|any|[{"type":"T","data":{}},{"type":"T","data":{},"metadata":"m"}]|error EINVALID -1 one or more fields are invalid [{"field":"events[1].metadata","message":"must be an object"}]
s|any|[{"type":"T","data":{},"event_id":"not-a-uuid"}]|error EINVALID -1 one or more fields are invalid [{"field":"events[0].event_id","message":"must be a UUID"}]
s|any|[{"type":"T","data":{},"event_id":"11111111-1111-4111-8111-11111111111g"}]|error EINVALID -1 one or more fields are invalid [{"field":"events[0].event_id","message":"must be a UUID"}]
s|any|[{"type":"T","data":{},"event_id":"{11111111-1111-4111-8111-111111111111}"}]|error EINVALID -1 one or more fields are invalid [{"field":"events[0].event_id","message":"must be a UUID"}]
s|any|[{"type":"T","data":{},"event_id":"aaaaaaaa-1111-4111-8111-111111111111"},{"type":"T","data":{},"event_id":"AAAAAAAA-1111-4111-8111-111111111111"}]|error EINVALID -1 one or more fields are invalid [{"field":"event_id","message":"'aaaaaaaa-1111-4111-8111-111111111111' is given twice"}]
s|any|[{"type":7},{"type":"T","data":{},"event_id":5}]|error EINVALID -1 one or more fields are invalid [{"field":"events[0].type","message":"must be a string of 1 to 200 characters"},{"field":"events[0].data","message":"must be an object"},{"field":"events[1].event_id","message":"must be a UUID"}]
EOF
expect_sc 'error EINVALID -1 one or more fields are invalid [{"field":"stream_id","message":"'"'"'twice'"'"' is given twice"}]' \
	append twice any "$ONE" twice any "$ONE"
expect_sc 'error EINVALID -1 one or more fields are invalid [{"field":"streams[1].events[0].data","message":"must be an object"}]' \
	append s1 any "$ONE" s2 any '[{"type":"T","data":3}]'
expect_eq "$(psql_q "SELECT count(*) FROM events")" "$before" \
	"bad input stored something"
# 200 characters (not bytes) is the limit
[[ $(sc append "$(printf 'é%.0s' $(seq 200))" any "$ONE") =~ ^ok\ 1\  ]] ||
	fail "a stream id of 200 two-byte characters was refused"

say "reading a stream in pages"
for i in 1 2 3 4 5; do
	sc append page-1 any "[{\"type\":\"P$i\",\"data\":{\"i\":$i}}]" >/dev/null
done
ids=$(psql_q "SELECT string_agg(event_id::text, ' ' ORDER BY stream_version)
	FROM events WHERE stream_id = 'page-1'")
read -r u1 u2 u3 u4 u5 <<<"$ids"
expect_sc "1 P1 $u1 {\"i\":1} {}
2 P2 $u2 {\"i\":2} {}" read page-1 1 2
expect_sc "3 P3 $u3 {\"i\":3} {}
4 P4 $u4 {\"i\":4} {}" read page-1 3 2
expect_sc "5 P5 $u5 {\"i\":5} {}" read page-1 5 2
expect_sc "" read page-1 6 2
expect_sc "" read no-such-stream 1 10
expect_sc "2 P2 $u2 {\"i\":2} {}
3 P3 $u3 {\"i\":3} {}
4 P4 $u4 {\"i\":4} {}
5 P5 $u5 {\"i\":5} {}" read page-1 2 100
expect_sc '1 Opened '"$(psql_q "SELECT event_id FROM events WHERE stream_id = 'acct-1' AND stream_version = 1")"' {"owner":"ann"} {"by":"t0200"}' \
	read acct-1 1 1
expect_sc 'error EINVALID -1 one or more fields are invalid [{"field":"limit","message":"must be in [1, 100000]"}]' \
	read page-1 1 0

say "the append token, and whether reads cover it"
# a read token for everything so far
r0=$(sc tail 0:0: 100000 | sed -n 's/^next //p')
[ -n "$r0" ] || fail "no read token"
out=$(sc append cov-1 any "$E1")
[[ $out =~ ^ok\ 2\ ([0-9]+)\.([0-9]+)$ ]] || fail "append: '$out'"
t1=${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
p1=${BASH_REMATCH[2]}
expect_sc 0 covers "$r0" "$t1"
read1=$(sc tail "$r0" 100)
expect_eq "$(grep -v '^next ' <<<"$read1")" "$((p1 - 1)) cov-1 1
$p1 cov-1 2" "the read after the append returns its events"
r1=$(sed -n 's/^next //p' <<<"$read1")
expect_sc 1 covers "$r1" "$t1"
expect_sc 1 covers "$r1" "$r0"
expect_sc 0 covers "$r0" "$r1"
expect_sc 1 covers "$r1" "$r1"
expect_sc 1 covers "$r1" "$token"
# in pages of one: mid-window tokens along the way
mid=$(sc tail "$r0" 1)
expect_eq "$(grep -v '^next ' <<<"$mid")" "$((p1 - 1)) cov-1 1" "first page"
m1=$(sed -n 's/^next //p' <<<"$mid")
[[ $m1 == */*/* ]] || fail "not a mid-window token: '$m1'"
expect_sc 0 covers "$m1" "$t1"
expect_sc 1 covers "$m1" "$r0"
mid=$(sc tail "$m1" 1)
expect_eq "$(grep -v '^next ' <<<"$mid")" "$p1 cov-1 2" "second page"
m2=$(sed -n 's/^next //p' <<<"$mid")
[[ $m2 =~ ^[0-9]+:[0-9]+:[0-9,]*$ ]] || fail "the window did not end: '$m2'"
expect_sc 1 covers "$m2" "$t1"
expect_sc 1 covers "$m2" "$m1"
expect_sc 1 covers "$m2" "$r1"
expect_sc 0 covers "$m1" "$m2"
expect_sc "error EMALFORMED -1 malformed position token: xmin above xmax" \
	tail 9:5: 10
# a token from the future (another cluster, a replica ahead of this one)
expect_sc "error EUNAVAIL -1 the database has not reached this position yet" \
	tail 0:4000000000: 10
expect_sc "error EUNAVAIL -1 the database has not reached this position yet" \
	tail 0:0:/3999999999:4000000000:/3999999999.1 10
expect_sc "error EMALFORMED -1 malformed position token: not an append token" \
	covers "$r1" 12.x

say "two connections racing"
sc race
sc race-ids
sc younger
sc commit-error

say "group roles: tandem_writer may append, tandem_reader may only read"
role=t0200_w_$$
rrole=t0200_r_$$
at_exit "psql_q 'DROP ROLE IF EXISTS $role; DROP ROLE IF EXISTS $rrole' >/dev/null"
psql_q "CREATE ROLE $role LOGIN IN ROLE tandem_writer;
	CREATE ROLE $rrole LOGIN IN ROLE tandem_reader" >/dev/null
wurl=${DATABASE_URL/\/\/$PGUSER@/\/\/$role@}
rurl=${DATABASE_URL/\/\/$PGUSER@/\/\/$rrole@}
[ "$wurl" != "$DATABASE_URL" ] || fail "cannot make a URL for $role"
[[ $(DATABASE_URL=$wurl sc append role-1 no_stream "$ONE") =~ ^ok\ 1\  ]] ||
	fail "tandem_writer cannot append"
out=$(DATABASE_URL=$rurl sc append role-1 1 "$ONE")
[[ $out == "error EINTERNAL "* ]] || fail "tandem_reader appended: '$out'"
[[ $(DATABASE_URL=$rurl sc tail 0:0: 1) == *next* ]] ||
	fail "tandem_reader cannot tail"
expect_eq "$(count role-1)" 1 "role-1 events"
