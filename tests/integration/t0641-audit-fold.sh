#!/usr/bin/env bash
# t0641-audit-fold.sh - the audit view equals a fold of the metadata after
# 2,000 random commands by several principals.
#
# The commands (opens, deposits, withdrawals, transfers over three
# streams, notes of one to three events in other streams; a few without
# a command_id, a few with a principal of odd shape or none) go through
# the command service's append functions from four sessions at once, each
# on accounts of its own (so every append succeeds):
# tandem_append() one command a transaction, and tandem_append_batch()
# several commands on disjoint streams in one statement (a group commit,
# whose commands' events interleave). The query service projects in
# batches of 97 events, so commands are split across batches.
# Then, for every principal, GET /audit/principals/{sub}/actions (paged
# 1000, and a random limit) equals the fold of the events table written
# in SQL (audit_lib.sh), and the view lists no other principal.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/audit_lib.sh"

COMMANDS=${T0641_COMMANDS:-2000}
NACC=40
SESSIONS=4
SEED=${T0641_SEED:-$RANDOM}
RANDOM=$SEED
say "seed $SEED (T0641_SEED=$SEED to repeat)"

migrate_db
start_service QRY query-service POLL_INTERVAL_MS=50 PROJECTOR_BATCH=97

# gen SESSION FIRST COUNT: psql statements appending COUNT commands, the
# first numbered FIRST (or, for SESSION 0, opening the accounts)
gen()
{
	awk -v seed="$SEED" -v session="$1" -v first="$2" -v count="$3" \
		-v nacc="$NACC" -v sessions="$SESSIONS" '
	function acc(i) { return sprintf("%08x-0000-4000-8000-%012d", seed, i) }
	function uuid(n) { return sprintf("%08x-%04x-4000-8000-%012d", seed, session + 1, n) }
	function meta(n,    r, who, m) {
		r = int(rand() * 100)
		who = subs[int(rand() * nsubs)]
		if (r < 2)
			return "{\"principal\": \"" who "\", \"command_id\": \"" uuid(n) "\"}"
		if (r < 4)
			return "{\"command_id\": \"" uuid(n) "\"}"
		if (r < 5)
			return "{\"principal\": {\"sub\": \"" long "\"}, \"command_id\": \"" uuid(n) "\"}"
		m = "{\"principal\": {\"sub\": \"" who "\", \"iss\": \"https://idp.test\", \"roles\": [\"holder\"]}"
		if (r >= 8)
			m = m ", \"command_id\": \"" uuid(n) "\", \"causation_id\": \"" uuid(n) "\""
		if (r % 3)
			m = m ", \"correlation_id\": \"corr-" int(rand() * 50) "\""
		return m "}"
	}
	function ev(type, data, m) {
		return "{\"type\": \"" type "\", \"data\": " data ", \"metadata\": " m "}"
	}
	function stream(id, evs) {
		return "{\"stream_id\": \"" id "\", \"expected\": -2, \"events\": [" evs "]}"
	}
	function money(type, amount) {
		return "{\"amount\": " amount ", \"balance_after\": " (int(rand() * 100000) - 5000) ", \"currency\": \"EUR\"}"
	}
	# the streams of command n, on accounts not in used[] (marked)
	function command(n,    m, r, a, b, k, evs, t) {
		m = meta(n)
		r = int(rand() * 100)
		do a = base + int(rand() * mine); while (a in used)
		used[a] = 1
		if (r < 35)
			return stream("account-" acc(a), ev("MoneyDeposited", money("d", int(rand() * 3000) + 1), m))
		if (r < 55)
			return stream("account-" acc(a), ev("MoneyWithdrawn", money("w", int(rand() * 800) + 1), m))
		if (r < 85) {
			do b = base + int(rand() * mine); while (b in used)
			used[b] = 1
			r = int(rand() * 700) + 1
			t = "\"transfer_id\": \"" uuid(n) "\""
			evs = stream("account-" acc(a), ev("TransferSent", "{\"amount\": " r ", \"balance_after\": 0, \"currency\": \"EUR\", " t ", \"to_account_id\": \"" acc(b) "\"}", m))
			evs = evs ", " stream("account-" acc(b), ev("TransferReceived", "{\"amount\": " r ", \"balance_after\": 0, \"currency\": \"EUR\", " t ", \"from_account_id\": \"" acc(a) "\"}", m))
			return evs ", " stream("transfer-" uuid(n), ev("TransferMade", "{\"amount\": " r ", \"currency\": \"EUR\", " t "}", m))
		}
		evs = ev("Noted", "{\"amount\": " n ", \"k\": 1}", m)
		for (k = int(rand() * 3); k > 0; k--)
			evs = evs ", " ev("Noted", "{\"k\": " k "}", m)
		return stream("misc-" session "-" (n % 20), evs)
	}
	BEGIN {
		srand(seed * 10 + session)
		nsubs = split("ann bob cy|svc@idp d\303\266rte svc-batch", subs, " ")
		for (i = 1; i <= nsubs; i++) subs[i - 1] = subs[i]
		long = sprintf("%300s", ""); gsub(/ /, "l", long)
		# each session its own accounts: no append loses a race
		mine = int(nacc / sessions)
		base = (session - 1) * mine
		if (session == 0) {
			for (i = 0; i < nacc; i++)
				printf "SELECT 1 FROM tandem_append($j$[%s]$j$::jsonb);\n", stream("account-" acc(i), ev("AccountOpened", "{\"account_id\": \"" acc(i) "\", \"owner\": \"o" i "\", \"currency\": \"EUR\", \"overdraft_limit\": 0}", meta(i)))
			exit
		}
		n = first
		while (n < first + count) {
			split("", used)
			if (rand() < 0.3) {
				# a group commit of 2 to 4 commands on disjoint streams
				k = int(rand() * 3) + 2
				if (n + k > first + count) k = first + count - n
				s = ""
				for (i = 0; i < k; i++)
					s = s (i ? ", " : "") "{\"i\": " i + 1 ", \"s\": [" command(n + i) "]}"
				printf "SELECT count(*) FROM tandem_append_batch($j$[%s]$j$::jsonb);\n", s
				n += k
			} else {
				printf "SELECT 1 FROM tandem_append($j$[%s]$j$::jsonb);\n", command(n)
				n++
			}
		}
	}'
}

say "open $NACC accounts"
gen 0 0 0 >"$TEST_TMP/open.sql"
psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$DATABASE_URL" -f "$TEST_TMP/open.sql" \
	>/dev/null || fail "cannot open the accounts"

say "$COMMANDS random commands from $SESSIONS sessions at once"
per=$((COMMANDS / SESSIONS))
pids=()
for s in $(seq 1 $SESSIONS); do
	gen "$s" $(((s - 1) * per + NACC)) "$per" >"$TEST_TMP/s$s.sql"
	[ "$(grep -c 'tandem_append' "$TEST_TMP/s$s.sql")" -gt $((per / 4)) ] ||
		fail "session $s has too few statements"
	psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$DATABASE_URL" \
		-f "$TEST_TMP/s$s.sql" \
		>"$TEST_TMP/s$s.out" 2>"$TEST_TMP/s$s.err" &
	pids+=($!)
	track_pid "$!"
done
for pid in "${pids[@]}"; do
	wait "$pid" || fail "a session failed: $(tail -3 "$TEST_TMP"/s*.err)"
done
stored=$(psql_q "SELECT count(DISTINCT metadata->>'command_id')
	FROM events WHERE metadata ? 'command_id'")
say "$(psql_q "SELECT count(*) FROM events") events, $stored command ids"
[ "$stored" -ge $((COMMANDS * 9 / 10)) ] || fail "only $stored command ids"

say "wait until the audit view has passed the log"
snap=$(psql_q "SELECT pg_current_snapshot()")
http GET "$QRY_URL/audit/principals/ann/actions" "" \
	-H "X-Min-Position: $snap" -H 'X-Wait-Ms: 10000'
expect_status 200
http GET "$QRY_URL/status"
expect_json '[.views[].stopped] | any' false
expect_json '[.views[] | select(.name == "audit") | .parked[]] | length' 0

say "every principal's actions equal the fold of the metadata"
mapfile -t SUBS < <(audit_subs)
expect_eq "${#SUBS[@]}" 5 "principals in the log"
expect_eq "$(psql_q "SELECT count(DISTINCT sub) FROM view_audit")" 5 \
	"principals in the view"
audit_fold_lines >"$TEST_TMP/fold"
audit_view_lines "${SUBS[@]}" >"$TEST_TMP/view"
diff -u "$TEST_TMP/fold" "$TEST_TMP/view" >"$TEST_TMP/diff" || {
	head -n 40 "$TEST_TMP/diff" >&2
	fail "the view differs from the fold"
}
n=$(grep -c . "$TEST_TMP/fold")
[ "$n" -ge $((COMMANDS * 8 / 10)) ] || fail "only $n commands folded"
expect_eq "$(jq -s '[.[].item.events | length] | add' "$TEST_TMP/fold")" \
	"$(psql_q "SELECT count(*) FROM events
	WHERE jsonb_typeof(metadata->'principal'->'sub') = 'string'
	AND octet_length(metadata->'principal'->>'sub') BETWEEN 1 AND 256")" \
	"events listed"
jq -e -s '[.[].item.events[] | select(.amount != null)] | length > 500' \
	"$TEST_TMP/fold" >/dev/null || fail "too few amounts"
jq -e -s '[.[].item | select(.events | map(.stream) | unique | length > 1)]
	| length > 100' "$TEST_TMP/fold" >/dev/null ||
	fail "too few commands over several streams"
say "$n commands of ${#SUBS[@]} principals"

say "no window's COPY was undone: each row of view_audit inserted once"
# The windows of 97 events end inside transactions, group commits among
# them, whose commands' events interleave: the rest of such a
# transaction is merged, not copied. Rows a COPY inserted before it was
# undone count in n_tup_ins too. The projector's backend reports its
# counts within seconds of a commit.
rows=$(psql_q "SELECT count(*) FROM view_audit")
for _ in $(seq 1 60); do
	ins=$(psql_q "SELECT n_tup_ins FROM pg_stat_user_tables
		WHERE relname = 'view_audit'")
	[ "$ins" -ge "$rows" ] && break
	sleep 0.5
done
expect_eq "$ins" "$rows" "rows inserted into view_audit"

say "paged with random limits, the same"
for sub in "${SUBS[@]}"; do
	audit_pages "$sub" 1000 | jq -c . >"$TEST_TMP/one"
	audit_items_check <"$TEST_TMP/one"
	limit=$((RANDOM % 60 + 1))
	audit_pages "$sub" "$limit" | jq -c . >"$TEST_TMP/paged"
	diff -q "$TEST_TMP/one" "$TEST_TMP/paged" >/dev/null ||
		fail "$sub in pages of $limit differs from one page"
done
