#!/usr/bin/env bash
# t0340-sigterm.sh - SIGTERM under load. A psql session holds a lock on
# the events table, so that 45 commands wait in the pool (a few running,
# blocked in PostgreSQL, the rest queued) while 5 more clients are still
# sending their bodies slowly. On SIGTERM the service stops accepting
# connections, finishes every one of those 50 requests with a complete
# answer once the lock goes, and exits 0. When the grace period runs out
# first, the requests still queued are answered 503 (complete answers
# still) and their commands are not applied afterwards; the ones running
# in PostgreSQL are cancelled and answer truly (503 for a statement that
# was cancelled, never for one that went in), and the service exits 0
# while the lock is still held.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

export MIGRATIONS_DIR=$TANDEM_ROOT/migrations
J='Content-Type: application/json'
NFAST=45
NSLOW=5

# metric NAME: its value in GET /metrics.
metric()
{
	curl -sf --max-time 5 "$CMD_URL/metrics" |
		awk -v n="$1" '$1 == n { print $2 }'
}

# Requests in the pool (running or queued) are $1.
pool_holds()
{
	local m

	m=$(curl -sf --max-time 5 "$CMD_URL/metrics") || return 1
	[ "$(awk '$1 == "tandem_db_pool_in_use" || $1 == "tandem_db_pool_waiting" { n += $2 } END { print n + 0 }' <<<"$m")" = "$1" ]
}

opened_count()
{
	psql_q "SELECT count(*) FROM events WHERE event_type = 'AccountOpened'"
}

# Lock the events table against inserts, in a session fed through a FIFO.
lock_events()
{
	local fifo=$TEST_TMP/hold.$1

	mkfifo "$fifo"
	psql -X -q -v ON_ERROR_STOP=1 -d "$DATABASE_URL" <"$fifo" \
		>"$TEST_TMP/hold.$1.out" 2>&1 &
	track_pid $!
	HOLDER=$!
	exec 7>"$fifo"
	echo "BEGIN; LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE;" >&7
	wait_for 10 bash -c "[ \"\$(psql -X -A -t -d '$DATABASE_URL' -c \
		\"SELECT count(*) FROM pg_locks WHERE granted AND \
		mode = 'ShareRowExclusiveLock' AND \
		relation = 'events'::regclass\")\" = 1 ]"
}

unlock_events()
{
	echo "COMMIT;" >&7
	exec 7>&-
	wait "$HOLDER" || fail "the lock holding psql session failed:" \
		"$(cat "$TEST_TMP"/hold.*.out)"
}

# fast_clients N TAG: N background POST /accounts; results in
# $TEST_TMP/TAG.N.res as "<curl exit code> <status>".
fast_clients()
{
	local i

	FAST_PIDS=()
	for i in $(seq 1 "$1"); do
		(
			rc=0
			code=$(curl -sS --max-time 60 -o "$TEST_TMP/$2.$i.body" \
				-w '%{http_code}' -X POST -H "$J" \
				-d "{\"owner\":\"$2 $i\",\"currency\":\"EUR\"}" \
				"$CMD_URL/accounts" 2>"$TEST_TMP/$2.$i.err") ||
				rc=$?
			echo "$rc $code" >"$TEST_TMP/$2.$i.res"
		) &
		FAST_PIDS+=($!)
	done
}

# slow_client N: POST /accounts that sends its headers and the first bytes
# of its body, writes slow.N.sent, waits for $TEST_TMP/go, sends the rest
# and writes the whole response to slow.N.resp.
slow_client()
{
	perl -MIO::Socket::INET -e '
		my ($port, $n, $dir) = @ARGV;
		my $body = "{\"owner\":\"slow $n\",\"currency\":\"EUR\"}";
		my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
			PeerPort => $port) or die "connect: $!";
		$s->autoflush(1);
		print $s "POST /accounts HTTP/1.1\r\nHost: 127.0.0.1\r\n" .
			"Authorization: Bearer $ENV{TANDEM_TOKEN}\r\n" .
			"Content-Type: application/json\r\n" .
			"Content-Length: " . length($body) . "\r\n" .
			"Connection: close\r\n\r\n" . substr($body, 0, 9);
		open(my $m, ">", "$dir/slow.$n.sent") or die; close($m);
		for (1 .. 1200) {
			last if -e "$dir/go";
			select(undef, undef, undef, 0.05);
		}
		for my $c (split //, substr($body, 9)) {
			print $s $c;
			select(undef, undef, undef, 0.01);
		}
		local $/;
		my $resp = <$s>;
		open(my $f, ">", "$dir/slow.$n.resp") or die;
		print $f (defined $resp ? $resp : "");
		close($f);
	' "$CMD_PORT" "$1" "$TEST_TMP"
}

# A raw HTTP response file is complete: status line, and a body as long
# as its Content-Length. Prints the status.
complete_status()
{
	perl -e '
		local $/; open(my $f, "<", $ARGV[0]) or exit 1;
		my $r = <$f>;
		$r =~ m{\AHTTP/1\.1 (\d{3}) .*?\r\n\r\n}s or exit 1;
		my $st = $1;
		my ($head, $body) = split /\r\n\r\n/, $r, 2;
		$head =~ /^Content-Length: *(\d+)\r?$/mi or exit 1;
		length($body) == $1 or exit 1;
		print "$st\n";' "$1"
}

migrate_db

say "SIGTERM with 50 requests in flight: all of them finish"
start_service CMD command-service BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=4 \
	DB_QUEUE_TIMEOUT_MS=60000 DB_STATEMENT_TIMEOUT_MS=60000 \
	SHUTDOWN_GRACE_MS=30000
http POST "$CMD_URL/accounts" '{"owner":"warm","currency":"EUR"}'
expect_status 201
lock_events 1
fast_clients "$NFAST" fast
SLOW_PIDS=()
for i in $(seq 1 "$NSLOW"); do
	slow_client "$i" &
	SLOW_PIDS+=($!)
done
wait_for 15 pool_holds "$NFAST"
wait_for 10 bash -c "[ \$(ls '$TEST_TMP'/slow.*.sent | wc -l) = $NSLOW ]"
# the server has accepted every connection and read what each sent: none
# waits in the listen queue, none has unread bytes
all_read()
{
	ss -Hltn "( sport = :$CMD_PORT )" | awk '$2 != 0 { exit 1 }' &&
		ss -Htn state established "( sport = :$CMD_PORT )" |
		awk '$1 != 0 { exit 1 }'
}
wait_for 10 all_read
expect_eq "$(metric tandem_db_pool_in_use)" 4 "pool workers busy"
! compgen -G "$TEST_TMP/fast.*.res" >/dev/null ||
	fail "a command finished while the events table was locked"

kill -TERM "$CMD_PID"
wait_for 5 grep -q '"event":"stopping"' "$TEST_TMP/CMD.log"
in_flight=$(grep '"event":"stopping"' "$TEST_TMP/CMD.log" | jq .in_flight)
[ "$in_flight" -ge $((NFAST + NSLOW)) ] ||
	fail "only $in_flight requests in flight at SIGTERM"

say "new connections are refused after SIGTERM"
rc=0
curl -sS --max-time 3 -o /dev/null "$CMD_URL/health" 2>"$TEST_TMP/new.err" ||
	rc=$?
expect_eq "$rc" 7 "curl exit code for a new connection ($(cat "$TEST_TMP/new.err"))"
kill -0 "$CMD_PID" 2>/dev/null || fail "the service exited with requests in flight"

say "the lock goes: every request gets its answer, exit status 0"
touch "$TEST_TMP/go"
unlock_events
for p in "${FAST_PIDS[@]}" "${SLOW_PIDS[@]}"; do
	wait "$p" || fail "a client failed"
done
for i in $(seq 1 "$NFAST"); do
	read -r rc code <"$TEST_TMP/fast.$i.res"
	[ "$rc" = 0 ] || fail "request $i: curl exit $rc: $(cat "$TEST_TMP/fast.$i.err")"
	[ "$code" = 201 ] || fail "request $i: status $code: $(cat "$TEST_TMP/fast.$i.body")"
	jq -e '.account_id | length == 36' "$TEST_TMP/fast.$i.body" >/dev/null ||
		fail "request $i: body $(cat "$TEST_TMP/fast.$i.body")"
done
for i in $(seq 1 "$NSLOW"); do
	st=$(complete_status "$TEST_TMP/slow.$i.resp") ||
		fail "slow request $i: incomplete response: $(cat "$TEST_TMP/slow.$i.resp")"
	expect_eq "$st" 201 "slow request $i status"
done
expect_eq "$(stop_pid "$CMD_PID")" 0 "command-service exit status"
expect_eq "$(opened_count)" $((1 + NFAST + NSLOW)) "accounts opened"
! grep -q '"event":"http_stop_cut"' "$TEST_TMP/CMD.log" ||
	fail "requests were cut short"
grep -q '"event":"stopped"' "$TEST_TMP/CMD.log" || fail "no stopped line"

say "grace period too short: 503 only for what did not run, complete answers"
start_service CMD command-service BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=2 \
	DB_QUEUE_TIMEOUT_MS=60000 DB_STATEMENT_TIMEOUT_MS=60000 \
	SHUTDOWN_GRACE_MS=500
lock_events 2
fast_clients 20 cut
wait_for 15 pool_holds 20
kill -TERM "$CMD_PID"
for p in "${FAST_PIDS[@]}"; do
	wait "$p" || fail "a client failed"
done
n503=0
: >"$TEST_TMP/cut.503"
: >"$TEST_TMP/cut.201"
for i in $(seq 1 20); do
	read -r rc code <"$TEST_TMP/cut.$i.res"
	[ "$rc" = 0 ] || fail "request $i: curl exit $rc: $(cat "$TEST_TMP/cut.$i.err")"
	case $code in
	503)
		jq -e '.status == 503' "$TEST_TMP/cut.$i.body" >/dev/null ||
			fail "request $i: body $(cat "$TEST_TMP/cut.$i.body")"
		echo "cut $i" >>"$TEST_TMP/cut.503"
		n503=$((n503 + 1))
		;;
	201) echo "cut $i" >>"$TEST_TMP/cut.201" ;;
	504) ;; # outcome unknown: either way is right
	*) fail "request $i: status $code: $(cat "$TEST_TMP/cut.$i.body")" ;;
	esac
done
say "$n503 answered 503, $(wc -l <"$TEST_TMP/cut.201") answered 201"
# the queued ones at least: the two workers hold a few, the rest wait
[ "$n503" -ge 10 ] || fail "only $n503 answers 503"
expect_eq "$(stop_pid "$CMD_PID")" 0 "command-service exit status"
unlock_events
# what was answered 503 is not applied, not even once the lock is gone;
# what was answered 201 is
sleep 0.5
psql_q "SELECT data->>'owner' FROM events
	WHERE event_type = 'AccountOpened' AND data->>'owner' LIKE 'cut %'" |
	sort >"$TEST_TMP/cut.logged"
applied=$(sort "$TEST_TMP/cut.503" | comm -12 - "$TEST_TMP/cut.logged")
[ -z "$applied" ] || fail "answered 503, yet in the log: $applied"
lost=$(sort "$TEST_TMP/cut.201" | comm -23 - "$TEST_TMP/cut.logged")
[ -z "$lost" ] || fail "answered 201, not in the log: $lost"
grep -q '"event":"http_stop_cut"' "$TEST_TMP/CMD.log" ||
	fail "no http_stop_cut line"
! grep -E 'Sanitizer|runtime error' "$TEST_TMP/CMD.log.prev" "$TEST_TMP/CMD.log" ||
	fail "a sanitizer report in the command service's log"
