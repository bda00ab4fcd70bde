#!/usr/bin/env bash
# t0530-disk-full.sh - fault suite: the database's disk fills up.
#
# A cluster whose data directory is a small tmpfs (its WAL on the test's
# own disk, as on a server with a WAL volume of its own: a full WAL
# volume stops PostgreSQL itself) is filled by deposits, 4 at a time,
# after a filler file has taken all but FREE_KB of it. While it is full
# every deposit is answered 201 or a clean 503 (problem+json with
# Retry-After), nothing else; then the filler goes, and the same
# processes serve deposits again and the views catch up by themselves
# (a read that must wait for them meanwhile is 200 or a clean 503).
# Afterwards the deposits in the log are exactly those answered 201 (each
# has an amount of its own): none acknowledged is lost, none answered 503
# was applied, and the account's balance in the view is their sum.
#
# Mounting a tmpfs needs root (or CAP_SYS_ADMIN); without it the test
# says why and counts as skipped.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

DISK_MB=160
FREE_KB=512
CLIENTS=4
FILL_S=45 # 20 deposits must be refused within this
REF=$(printf 'r%.0s' $(seq 1 200))

MNT=$TEST_TMP/disk
mkdir -p "$MNT"
if ! out=$(mount -t tmpfs -o "size=${DISK_MB}m,mode=755" t0530 "$MNT" 2>&1); then
	skip "cannot mount a tmpfs: ${out:-mount failed} (needs root)"
fi
# the cluster first: a lazy unmount would leave it running unseen
at_exit "'$TANDEM_ROOT/scripts/pg' destroy '$MNT/pg' >&2 || true;
	umount '$MNT' 2>/dev/null || umount -l '$MNT'"

say "a cluster on a ${DISK_MB} MiB tmpfs, its WAL elsewhere"
pg_own_start "$MNT/pg"
[ ! -e "$MNT/pg/realdir" ] || fail "the cluster does not live on the tmpfs"
pg_own_stop "$MNT/pg"
mkdir "$TEST_TMP/wal"
chown --reference="$MNT/pg/data" "$TEST_TMP/wal"
chmod 700 "$TEST_TMP/wal"
mv "$MNT/pg/data/pg_wal"/* "$TEST_TMP/wal/"
rmdir "$MNT/pg/data/pg_wal"
ln -s "$TEST_TMP/wal" "$MNT/pg/data/pg_wal"
pg_own_start "$MNT/pg"
migrate_db "$OWN_DATABASE_URL"
start_service CMD command-service DATABASE_URL="$OWN_DATABASE_URL" \
	DB_POOL_SIZE=4
start_service QRY query-service DATABASE_URL="$OWN_DATABASE_URL" \
	POLL_INTERVAL_MS=50
http POST "$CMD_URL/accounts" '{"owner":"t0530","currency":"EUR"}'
expect_status 201
A=$(jq -r .account_id <<<"$HTTP_BODY")

avail_kb()
{
	df -k --output=avail "$MNT" | tail -n 1 | tr -d ' '
}

say "a filler leaves $FREE_KB KiB of $(avail_kb) KiB free"
fallocate -l $((($(avail_kb) - FREE_KB) * 1024)) "$MNT/filler"
say "$(avail_kb) KiB free"

# batch FILE AMOUNT...: a deposit of each amount, CLIENTS at a time (one
# curl), with the Idempotency-Key t0530-AMOUNT; appends one line per
# deposit to FILE: "amount status", the status "503bad" for a 503
# without problem+json or without Retry-After.
batch()
{
	local a out=$1 cfg=$TEST_TMP/batch.cfg

	shift
	: >"$cfg"
	for a in "$@"; do
		[ ! -s "$cfg" ] || echo next >>"$cfg"
		cat >>"$cfg" <<-EOC
			silent
			url = "$CMD_URL/accounts/$A/deposits"
			header = "Content-Type: application/json"
			header = "Idempotency-Key: t0530-$a"
			data = "{\\"amount\\":$a,\\"reference\\":\\"$REF\\"}"
			output = "/dev/null"
			max-time = 20
			write-out = "$a %{http_code} %header{retry-after}|%header{content-type}\\n"
		EOC
	done
	with_auth "$cfg"
	curl -q --no-progress-meter --parallel --parallel-max "$CLIENTS" -K "$cfg" |
		awk '{ st = $2 }
		     st == 503 && $3 !~ /^[1-9][0-9]*\|application\/problem\+json/ {
			st = "503bad" }
		     { print $1, st }' >>"$out"
}

say "fill it with deposits, $CLIENTS at a time"
: >"$TEST_TMP/answers"
next=1
t0=$(date +%s)
while [ "$(awk '$2 == 503' "$TEST_TMP/answers" | wc -l)" -lt 20 ]; do
	[ $(($(date +%s) - t0)) -lt "$FILL_S" ] ||
		fail "no 20 refusals within $FILL_S s: $(awk '{ print $2 }' \
			"$TEST_TMP/answers" | sort | uniq -c | tr '\n' ' ')"
	mapfile -t amounts < <(seq "$next" $((next + 99)))
	batch "$TEST_TMP/answers" "${amounts[@]}"
	next=$((next + 100))
	other=$(awk '$2 != 201 && $2 != 503' "$TEST_TMP/answers" | head -n 5)
	[ -z "$other" ] || fail "answers other than 201 and a clean 503:" \
		"$other"
done
say "answers: $(awk '{ print $2 }' "$TEST_TMP/answers" | sort | uniq -c |
	tr '\n' ' ')"
n503=$(awk '$2 == 503' "$TEST_TMP/answers" | wc -l)

say "a refusal in full: 503 problem+json with Retry-After"
for _ in $(seq 1 50); do
	http POST "$CMD_URL/accounts/$A/deposits" \
		"{\"amount\":$next,\"reference\":\"$REF\"}" \
		-H "Idempotency-Key: t0530-$next"
	echo "$next $HTTP_STATUS" >>"$TEST_TMP/answers"
	next=$((next + 1))
	[ "$HTTP_STATUS" = 201 ] || break
done
expect_status 503
expect_header Content-Type application/problem+json
expect_json .status 503
[[ $(header Retry-After) =~ ^[1-9][0-9]*$ ]] ||
	fail "Retry-After '$(header Retry-After)' is not a number of seconds"

say "the services still answer while it is full"
http GET "$CMD_URL/health"
expect_status 200
http GET "$QRY_URL/health"
expect_status 200
# the statement view cannot take the last deposits while the disk is
# full: a read that must cover them waits, then is a clean 503
LAST=$(DATABASE_URL=$OWN_DATABASE_URL psql_q "SELECT transaction_id || '.'
	|| global_position FROM events ORDER BY global_position DESC LIMIT 1")
http GET "$QRY_URL/accounts/$A/transactions" "" -H "X-Min-Position: $LAST" \
	-H 'X-Wait-Ms: 1000'
if [ "$HTTP_STATUS" != 200 ]; then
	expect_status 503
	expect_header Content-Type application/problem+json
	[[ $(header Retry-After) =~ ^[1-9][0-9]*$ ]] ||
		fail "Retry-After '$(header Retry-After)' is not a number of seconds"
fi
say "a statement read covering the last deposit: $HTTP_STATUS"

say "space given back: the same processes recover by themselves"
rm -f "$MNT/filler"
say "$(avail_kb) KiB free"
RECOVER=1000000
recovered()
{
	local code

	code=$(curl -s --max-time 5 -o "$TEST_TMP/rec.b" -w '%{http_code}' \
		-H 'Content-Type: application/json' \
		-H "Idempotency-Key: t0530-$RECOVER" \
		-d "{\"amount\":$RECOVER}" "$CMD_URL/accounts/$A/deposits") || true
	echo "$RECOVER $code" >>"$TEST_TMP/answers"
	[ "$code" = 201 ] || return 1
	jq -r .position "$TEST_TMP/rec.b" >"$TEST_TMP/rec.token"
}
t0=$(date +%s)
until recovered; do
	[ $(($(date +%s) - t0)) -lt 30 ] ||
		fail "deposits still fail 30 s after space came back"
	RECOVER=$((RECOVER + 1))
	sleep 0.2
done
say "a deposit went through after $(($(date +%s) - t0)) s"
for p in "$CMD_PID" "$QRY_PID"; do
	kill -0 "$p" 2>/dev/null || fail "service $p exited"
done

# log_is_acked [FILE...]: the account's deposits in the log are exactly
# those answered 201 in $TEST_TMP/answers and FILEs, each once
log_is_acked()
{
	local lost extra

	DATABASE_URL=$OWN_DATABASE_URL psql_q "SELECT
		(data->>'amount')::bigint FROM events
		WHERE stream_id = 'account-$A' AND event_type = 'MoneyDeposited'" |
		sort >"$TEST_TMP/logged"
	awk '$2 == 201 { print $1 }' "$TEST_TMP/answers" "$@" |
		sort >"$TEST_TMP/acked"
	lost=$(comm -23 "$TEST_TMP/acked" "$TEST_TMP/logged" | head -n 5)
	[ -z "$lost" ] || fail "deposits answered 201 not in the log: $lost"
	extra=$(comm -13 "$TEST_TMP/acked" "$TEST_TMP/logged" | head -n 5)
	[ -z "$extra" ] ||
		fail "deposits in the log not answered 201 (or twice): $extra"
}

say "the log holds exactly the deposits answered 201"
log_is_acked
say "$(wc -l <"$TEST_TMP/acked") acknowledged, all in the log;" \
	"none of the $n503 refused"

say "the refused deposits, sent again with their keys, go through once"
: >"$TEST_TMP/retried"
mapfile -t refused < <(awk '$2 != 201 { print $1 }' "$TEST_TMP/answers")
batch "$TEST_TMP/retried" "${refused[@]}"
bad=$(awk '$2 != 201' "$TEST_TMP/retried" | head -n 5)
[ -z "$bad" ] || fail "retries not answered 201: $bad"
log_is_acked "$TEST_TMP/retried"
http POST "$CMD_URL/accounts/$A/deposits" '{"amount":2000000}'
expect_status 201
TOKEN=$(jq -r .position <<<"$HTTP_BODY")
echo "2000000 201" >>"$TEST_TMP/retried"
log_is_acked "$TEST_TMP/retried"

say "the views caught up: the balance is the sum of the log"
http GET "$QRY_URL/accounts/$A" "" -H "X-Min-Position: $TOKEN" \
	-H 'X-Wait-Ms: 10000'
expect_status 200
expect_json .balance "$(awk '{ s += $1 } END { print s }' "$TEST_TMP/logged")"
