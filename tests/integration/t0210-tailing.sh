#!/usr/bin/env bash
# t0210-tailing.sh - SPEC 3 guarantee 4: a tailing reader never skips an
# event when transactions commit out of position order, an open
# transaction never holds back others' committed events, each event comes
# exactly once and each stream in version order; reads touch their window,
# not the table. The heavy lifting is in tail_check.c.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

export MIGRATIONS_DIR=$TANDEM_ROOT/migrations
migrate_db "$DATABASE_URL"
SC=$TANDEM_BUILD/tests/store_check
TC=$TANDEM_BUILD/tests/tail_check
for b in "$SC" "$TC"; do
	[ -x "$b" ] || fail "no $b: build it with make"
done

ONE='[{"type":"Later","data":{}}]'

# tail TOKEN LIMIT: the events of one read, then "next TOKEN"
tail_from()
{
	"$SC" tail "$1" "$2"
}

say "a psql session holds a transaction that wrote an event"
r0=$(tail_from 0:0: 1000 | sed -n 's/^next //p')
mkfifo "$TEST_TMP/held.in"
PGAPPNAME=t0210-held psql -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" \
	<"$TEST_TMP/held.in" >"$TEST_TMP/held.out" 2>&1 &
held_pid=$!
track_pid "$held_pid"
exec 3>"$TEST_TMP/held.in"
echo "BEGIN;
	INSERT INTO events (stream_id, stream_version, event_id, event_type,
		data, metadata)
	VALUES ('held-1', 1, gen_random_uuid(), 'Held', '{}', '{}');" >&3
# held_open: the session's transaction has an xid (it has written)
held_open()
{
	[ -n "$(psql_q "SELECT backend_xid FROM pg_stat_activity
		WHERE application_name = 't0210-held'")" ]
}
wait_for 10 held_open

say "later transactions commit; the reader gets them at once"
tokens=()
for i in 1 2 3; do
	out=$("$SC" append later-1 any "$ONE")
	tokens+=("${out##* }")
done
read1=$(tail_from "$r0" 100)
expect_eq "$(grep -v '^next ' <<<"$read1" | cut -d' ' -f2- | tr '\n' ,)" \
	"later-1 1,later-1 2,later-1 3," "the open transaction held back others"
r1=$(sed -n 's/^next //p' <<<"$read1")
for t in "${tokens[@]}"; do
	expect_eq "$("$SC" covers "$r1" "$t")" 1 "read covers $t"
done
expect_eq "$(tail_from "$r1" 100 | grep -vc '^next ' || true)" 0 \
	"nothing new while the transaction stays open"

say "the held transaction commits and comes in the next window"
echo "COMMIT;" >&3
exec 3>&-
wait_for 10 eval "! held_open"
read2=$(tail_from "$r1" 100)
expect_eq "$(grep -v '^next ' <<<"$read2" | cut -d' ' -f2-)" "held-1 1" \
	"the held event after its commit"
held_pos=$(grep -v '^next ' <<<"$read2" | cut -d' ' -f1)
[ "$held_pos" -lt "$(grep -v '^next ' <<<"$read1" | head -n 1 |
	cut -d' ' -f1)" ] || fail "the held event did not have the lower position"
r2=$(sed -n 's/^next //p' <<<"$read2")
expect_eq "$(tail_from "$r2" 100 | grep -vc '^next ' || true)" 0 \
	"nothing twice"
[ -z "$(grep -v '^$' "$TEST_TMP/held.out" || true)" ] ||
	fail "psql: $(cat "$TEST_TMP/held.out")"

# fresh_db NAME: a new migrated database of its own, for a scenario that
# counts every row
fresh_db()
{
	local url

	url=$(new_db "$1")
	migrate_db "$url" 2>/dev/null
	echo "$url"
}

say "held transactions, rolled back ones, mid-window pages"
url=$(fresh_db "t0210_ooo_$$")
DATABASE_URL=$url "$TC" outoforder

say "reads touch the window, not the rows since an old xmin"
url=$(fresh_db "t0210_scan_$$")
DATABASE_URL=$url "$TC" scan

say "8 writers against one reader"
seed=${TAIL_SEED:-$RANDOM}
url=$(fresh_db "t0210_stress_$$")
DATABASE_URL=$url timeout 60 "$TC" stress "$seed" ||
	fail "stress run failed (seed $seed)"
