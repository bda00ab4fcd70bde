#!/usr/bin/env bash
# t0830-memory-cap.sh - MEMORY_VIEW_MAX_MB: a query service whose
# in-memory account view is capped at 1 MiB (some 4,000 accounts) and
# one without a cap, on the same log and read database, answer every
# GET /accounts/{id} alike, whether the capped one holds the account or
# reads it from view_accounts:
# - status, body and ETag, for every account (6,000 of them: some loaded
#   at start, some opened after the cap was reached), each answer with
#   X-Min-Position of the last append and X-Wait-Ms 0 (so its X-Position,
#   a read token on every answer, covers it without waiting);
# - If-None-Match with that ETag is 304 on both;
# - X-Min-Position of a fresh deposit answers the new balance on both
#   paths, and a token the views have not reached is 503 on both;
# - a holder reads only its own accounts on both paths (404 for another's);
# - /status and /metrics say how many accounts are held and that the cap
#   is reached.
set -eu -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

N=${N:-6000}

migrate_db
start_service CMD command-service

say "$N accounts in the log (4 owners), half with a deposit"
psql_q "
INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
SELECT 'account-' || u, 1, gen_random_uuid(), 'AccountOpened',
	jsonb_build_object('account_id', u, 'owner', 'o' || (i % 4),
		'currency', 'EUR', 'overdraft_limit', 0)
FROM (SELECT gen_random_uuid()::text AS u, i
      FROM generate_series(1, $N) i) s ORDER BY i" >/dev/null
# the deposits, on every other account (the first insert's ids)
psql_q "
INSERT INTO events (stream_id, stream_version, event_id, event_type, data)
SELECT stream_id, 2, gen_random_uuid(), 'MoneyDeposited',
	jsonb_build_object('account_id', substr(stream_id, 9),
		'amount', global_position, 'balance_after', global_position,
		'currency', 'EUR')
FROM events WHERE global_position % 2 = 0 ORDER BY global_position" >/dev/null

start_service FULL query-service
accounts_held()
{
	http GET "$1/status"
	expect_status 200
	expect_json .memory_accounts "$2"
}
wait_for 60 accounts_held "$FULL_URL" "$N"
# every account in view_accounts too, so the capped one loads from it
projected()
{
	[ "$(psql_q "SELECT count(*) FROM view_accounts")" = "$N" ]
}
wait_for 60 projected

start_service CAP query-service MEMORY_VIEW_MAX_MB=1
capped()
{
	http GET "$CAP_URL/status"
	expect_status 200
	expect_json .memory_capped true
}
wait_for 30 capped
http GET "$CAP_URL/status"
loaded=$(jq -r .memory_accounts <<<"$HTTP_BODY")
expect_json .memory_max_bytes $((1024 * 1024))
[ "$loaded" -gt 0 ] && [ "$loaded" -lt "$N" ] ||
	fail "the capped service holds $loaded of $N accounts"
[ "$(jq -r .memory_bytes <<<"$HTTP_BODY")" -le $((1024 * 1024)) ] ||
	fail "memory_bytes past the cap: $HTTP_BODY"
say "the capped service holds $loaded of $N accounts"
http GET "$FULL_URL/status"
expect_json .memory_capped false
expect_json .memory_max_bytes 0
http GET "$CAP_URL/metrics"
expect_status 200
grep -qx 'tandem_memory_capped 1' <<<"$HTTP_BODY" ||
	fail "/metrics does not say the cap is reached"
grep -qx "tandem_memory_accounts $loaded" <<<"$HTTP_BODY" ||
	fail "/metrics does not say $loaded accounts are held"

say "accounts opened after the cap was reached, and a wait on each path"
MANAGER=$(mint mia manager)
declare -a NEW
for k in 1 2 3; do
	AS=$MANAGER cmd /accounts "{\"owner\":\"o$k\",\"currency\":\"EUR\"}"
	NEW+=("$(jq -r .account_id <<<"$HTTP_BODY")")
done
AS=$MANAGER cmd "/accounts/${NEW[0]}/deposits" '{"amount":777}'
for url in "$FULL_URL" "$CAP_URL"; do
	QRY_URL=$url ryw "/accounts/${NEW[0]}"
	expect_json .balance 777
	expect_header ETag '"2"'
done
# a held account (one of the first loaded) and one not held
held=$(psql_q "SELECT account_id FROM view_accounts ORDER BY account_id LIMIT 1")
unheld=${NEW[1]}
for id in "$held" "$unheld"; do
	AS=$MANAGER cmd "/accounts/$id/deposits" '{"amount":5}'
	want=$(jq -r .version <<<"$HTTP_BODY")
	for url in "$FULL_URL" "$CAP_URL"; do
		QRY_URL=$url ryw "/accounts/$id"
		expect_json .version "$want"
	done
done
# a token past everything: 503 after the wait, on both paths
far=$(psql_q "SELECT pg_current_xact_id()::text::bigint + 1000")
far="$far:$far:"
for id in "$held" "$unheld"; do
	for url in "$FULL_URL" "$CAP_URL"; do
		http GET "$url/accounts/$id" "" -H "X-Min-Position: $far" \
			-H 'X-Wait-Ms: 200'
		expect_status 503
		has_header X-Position || fail "no X-Position on a 503"
	done
done

# both services' views past the last append ($TOKEN), on both paths
for id in "$held" "$unheld"; do
	for url in "$FULL_URL" "$CAP_URL"; do
		QRY_URL=$url ryw "/accounts/$id"
	done
done

# fetch_all URL DIR [TOKEN]: every account's status, ETag and X-Position
# into DIR/index, its body into DIR/ID, in one curl
fetch_all()
{
	local url=$1 dir=$2 auth=() id

	mkdir -p "$dir"
	[ -z "${3-}" ] || auth=(-q -H "Authorization: Bearer $3")
	psql_q "SELECT account_id FROM view_accounts ORDER BY account_id" |
		while read -r id; do
			printf 'url = "%s/accounts/%s"\noutput = "%s/%s"\n' \
				"$url" "$id" "$dir" "$id"
		done >"$dir.cfg"
	# every answer covers the last append (X-Wait-Ms 0: no waiting)
	curl "${auth[@]}" -sS --max-time 120 -K "$dir.cfg" \
		-H "X-Min-Position: $TOKEN" -H 'X-Wait-Ms: 0' \
		-w '%{url}\t%{http_code}\t%header{etag}\t%header{x-position}\n' |
		sed -e "s|^$url||" >"$dir/all"
	expect_eq "$(wc -l <"$dir/all")" $((N + 3)) "answers in $dir"
	# X-Position is each service's own read token (two readers' snapshots
	# differ in xids other transactions took): a read token on every
	# answer, the rest compared as it is
	awk -F'\t' '$4 !~ /^[0-9]+:[0-9]+:[0-9,]*$/ { print; exit 1 }' \
		"$dir/all" || fail "an answer without a read token in $dir"
	cut -f 1-3 "$dir/all" >"$dir/index"
}

# same A B: the two services answered alike
same()
{
	diff "$TEST_TMP/$1/index" "$TEST_TMP/$2/index" >"$TEST_TMP/diff" ||
		fail "status or ETag differ:" \
			"$(head -n 6 "$TEST_TMP/diff")"
	diff -r -q -x index -x all "$TEST_TMP/$1" "$TEST_TMP/$2" >"$TEST_TMP/diff" ||
		fail "bodies differ: $(head -n 3 "$TEST_TMP/diff")"
}

say "every account answers alike on both (manager's view)"
fetch_all "$FULL_URL" "$TEST_TMP/full"
fetch_all "$CAP_URL" "$TEST_TMP/cap"
same full cap
ok=$(awk -F'\t' '$2 == 200' "$TEST_TMP/cap/index" | wc -l)
expect_eq "$ok" $((N + 3)) "200s"

say "a holder sees only its own on both paths"
O1=$(mint o1 holder)
fetch_all "$FULL_URL" "$TEST_TMP/full-o1" "$O1"
fetch_all "$CAP_URL" "$TEST_TMP/cap-o1" "$O1"
same full-o1 cap-o1
own=$(psql_q "SELECT count(*) FROM view_accounts WHERE owner = 'o1'")
expect_eq "$(awk -F'\t' '$2 == 200' "$TEST_TMP/cap-o1/index" | wc -l)" \
	"$own" "a holder's 200s"
expect_eq "$(awk -F'\t' '$2 == 404' "$TEST_TMP/cap-o1/index" | wc -l)" \
	$((N + 3 - own)) "a holder's 404s"

say "If-None-Match is 304 on both paths"
for id in "$held" "$unheld" "${NEW[0]}" "${NEW[2]}"; do
	etag=$(awk -F'\t' -v p="/accounts/$id" '$1 == p { print $3 }' \
		"$TEST_TMP/full/index")
	[ -n "$etag" ] || fail "no ETag for $id"
	for url in "$FULL_URL" "$CAP_URL"; do
		http GET "$url/accounts/$id" "" -H "If-None-Match: $etag"
		expect_status 304
		expect_header ETag "$etag"
	done
done
