#!/usr/bin/env bash
# t0366-header-deadline.sh - HEADER_TIMEOUT_SECONDS bounds each request's
# header phase as a whole, however steadily its bytes drip (each one well
# within IDLE_TIMEOUT_SECONDS): a connection's first request from the
# moment it is accepted, a kept-alive connection's next request from its
# first byte. Once the request line is in, the cut is answered 408
# problem+json and logged; before that the connection just closes. What
# the deadline leaves alone: a kept-alive connection idle between
# requests (the idle timeout's business), a body dripping after complete
# headers (REQUEST_TIMEOUT_SECONDS'), ordinary requests; 0 turns it off.
# The cases run side by side, each on a connection of its own.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

RAW=$TANDEM_BUILD/tests/rawhttp
[ -x "$RAW" ] || fail "no $RAW (make builds it from tests/integration/rawhttp.c)"
unset LOG_LEVEL PORT

migrate_db
start_service CMD command-service BIND_ADDRESS=127.0.0.1 \
	HEADER_TIMEOUT_SECONDS=3 IDLE_TIMEOUT_SECONDS=8 \
	REQUEST_TIMEOUT_SECONDS=30
start_service OFF command-service BIND_ADDRESS=127.0.0.1 \
	HEADER_TIMEOUT_SECONDS=0 IDLE_TIMEOUT_SECONDS=30
P=$CMD_PORT

# timed NAME CMD...: run CMD with stdout in $TEST_TMP/NAME.out, stderr in
# NAME.err, its exit status in NAME.rc and how long it took in NAME.ms.
timed()
{
	local name=$1 t0 rc=0

	shift
	t0=$(_lib_now_ms)
	"$@" >"$TEST_TMP/$name.out" 2>"$TEST_TMP/$name.err" || rc=$?
	echo $(($(_lib_now_ms) - t0)) >"$TEST_TMP/$name.ms"
	echo "$rc" >"$TEST_TMP/$name.rc"
}

# took NAME LOW HIGH: NAME ran LOW..HIGH ms.
took()
{
	local ms

	ms=$(cat "$TEST_TMP/$1.ms")
	[ "$ms" -ge "$2" ] && [ "$ms" -le "$3" ] ||
		fail "$1 took $ms ms, expected $2..$3:" \
			"$(tr -d '\r' <"$TEST_TMP/$1.out")"
}

# rc_is NAME RC: NAME exited with RC (rawhttp: 0 answered and closed,
# 2 closed without an answer, 3 neither within -t).
rc_is()
{
	[ "$(cat "$TEST_TMP/$1.rc")" = "$2" ] ||
		fail "$1: exit status $(cat "$TEST_TMP/$1.rc"), expected $2:" \
			"$(tr -d '\r' <"$TEST_TMP/$1.out") $(cat "$TEST_TMP/$1.err")"
}

# log_has PREFIX JQ_FILTER: PREFIX's log has a line FILTER selects.
log_has()
{
	jq -c "select($2)" "$TEST_TMP/$1.log" | grep -q .
}

# head_of NAME: the first answer's status line and headers in NAME.out.
head_of()
{
	tr -d '\r' <"$TEST_TMP/$1.out" | sed '/^$/q'
}

printf 'GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: %040d\r\n\r\n' 0 >"$TEST_TMP/padded.req"
printf 'GET /health HTTP/1.1\r\nHost: t\r\n\r\n' >"$TEST_TMP/get.req"
BODY='{"owner":"Slow Body","currency":"EUR"}'
printf 'POST /accounts HTTP/1.1\r\nHost: t\r\n%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' "$AUTH_HEADER" \
	"${#BODY}" "$BODY" >"$TEST_TMP/body.req"

# keepalive PORT FAST: on one connection, GET /health at once; then,
# after 4.5 s of silence (past the deadline), again; then a third one
# that sends its first FAST bytes at once and drips the rest, a byte a
# second, for at most 12 s. Prints "first STATUS", "second STATUS", then
# "third STATUS MS" (MS from its first byte; STATUS 0: no answer), then
# "closed MS" if the server closed the connection after that.
keepalive()
{
	perl -MIO::Socket::INET -MIO::Select -MTime::HiRes=time,sleep -e '
		my ($port, $fast) = @ARGV;
		my $req = "GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: " .
			("0" x 40) . "\r\n\r\n";
		my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
			PeerPort => $port) or die "connect: $!";
		my $sel = IO::Select->new($s);
		my $buf = "";
		# one answer with a Content-Length, within `wait` seconds
		sub answer {
			my ($wait) = @_;
			my $end = time + $wait;
			while (1) {
				if ($buf =~ /\A(HTTP\/1\.1 (\d+)[^\n]*\n.*?)\r\n\r\n/s) {
					my ($head, $st) = ($1, $2);
					my ($cl) = $head =~ /^Content-Length: *(\d+)/mi;
					my $n = length($head) + 4 + ($cl // 0);
					if (length($buf) >= $n) {
						$buf = substr($buf, $n);
						return $st;
					}
				}
				my $left = $end - time;
				return 0 if $left <= 0 || !$sel->can_read($left);
				return 0 unless sysread($s, $buf, 65536, length $buf);
			}
		}
		syswrite($s, $req);
		print "first ", answer(3), "\n";
		sleep 4.5;
		syswrite($s, $req);
		print "second ", answer(3), "\n";
		my $t0 = time;
		syswrite($s, substr($req, 0, $fast));
		for my $c (split //, substr($req, $fast)) {
			last if time - $t0 > 12 || $sel->can_read(0);
			syswrite($s, $c);
			last if $sel->can_read(1);
		}
		printf "third %d %d\n", answer(2), (time - $t0) * 1000;
		if ($sel->can_read(2) && !sysread($s, my $x, 1)) {
			printf "closed %d\n", (time - $t0) * 1000;
		}
	' "$1" "$2"
}

say "the cases start side by side"
# 1. a fresh connection: the request line at once, then the headers drip
# a byte a second (the 40 bytes of X-Pad would take 40 s): 408 after 3 s
timed drip "$RAW" -c -f 22 -d 1000 -t 12000 "$P" <"$TEST_TMP/padded.req" &
cases=($!)
# 2. the request line itself drips: cut without an answer
timed line "$RAW" -c -d 1000 -t 12000 "$P" <"$TEST_TMP/padded.req" &
cases+=($!)
# 3. a connection that sends nothing: cut without an answer
timed silent "$RAW" -c -t 12000 "$P" </dev/null &
cases+=($!)
# 4. kept alive: idle past the deadline, served, then a request whose
# headers drip after its request line: 408; or whose request line drips
# too, from its first byte: closed without an answer
timed keep keepalive "$P" 22 &
cases+=($!)
timed keepline keepalive "$P" 0 &
cases+=($!)
# 5. kept alive and idle after an answer: the idle timeout (8 s) closes it
timed idle "$RAW" -k -t 14000 "$P" <"$TEST_TMP/get.req" &
cases+=($!)
# 6. complete headers, then the body drips for about 6 s: served
timed body "$RAW" -c -b -d 150 -t 15000 "$P" <"$TEST_TMP/body.req" &
cases+=($!)
# 7. HEADER_TIMEOUT_SECONDS=0: no deadline, the drip goes on for 6 s
timed off "$RAW" -c -f 22 -d 1000 -t 6000 "$OFF_PORT" <"$TEST_TMP/padded.req" &
cases+=($!)

say "ordinary requests meanwhile"
for i in $(seq 1 20); do
	t0=$(_lib_now_ms)
	code=$(curl -sS --max-time 2 -o /dev/null -w '%{http_code}' \
		"$CMD_URL/health") || code="curl failed"
	expect_eq "$code" 200 "GET /health $i during the cases"
	t=$(($(_lib_now_ms) - t0))
	[ "$t" -lt 1000 ] || fail "GET /health $i took $t ms"
	sleep 0.2
done
wait "${cases[@]}"

say "1. headers dripping on a fresh connection: 408 after the deadline"
rc_is drip 0
took drip 2900 5500
head_of drip >"$TEST_TMP/drip.head"
grep -qx 'HTTP/1.1 408 Request Timeout' "$TEST_TMP/drip.head" ||
	fail "no 408: $(cat "$TEST_TMP/drip.head")"
grep -qix 'Connection: close' "$TEST_TMP/drip.head" ||
	fail "408 without Connection: close: $(cat "$TEST_TMP/drip.head")"
grep -qix 'Content-Type: application/problem+json' "$TEST_TMP/drip.head" ||
	fail "408 not problem+json: $(cat "$TEST_TMP/drip.head")"
body=$(tr -d '\r' <"$TEST_TMP/drip.out" | sed '1,/^$/d')
expect_eq "$(jq -r '"\(.status) \(.type) \(.detail)"' <<<"$body")" \
	"408 https://tandem.dev/problems/request-timeout the request headers did not arrive within 3 s" \
	"the 408's problem"
rid=$(sed -n 's/^X-Request-Id: //Ip' "$TEST_TMP/drip.head")
[ -n "$rid" ] || fail "408 without X-Request-Id: $(cat "$TEST_TMP/drip.head")"
wait_for 5 log_has CMD ".event == \"request\" and
	.request_id == \"$rid\" and .status == 408 and
	.termination == \"header_timeout\""
log_has CMD '.event == "header_timeout" and .seconds == 3' ||
	fail "no header_timeout log line"

say "2. a dripping request line: closed after the deadline, no answer"
rc_is line 2
took line 2900 5500
say "3. a connection that sends nothing: closed after the deadline"
rc_is silent 2
took silent 2900 5500

say "4. kept alive: idle past the deadline is fine, a dripping request is not"
out=$(cat "$TEST_TMP/keep.out")
[[ $out == $'first 200\nsecond 200\nthird 408 '* ]] ||
	fail "kept-alive connection: $out $(cat "$TEST_TMP/keep.err")"
ms=$(sed -n 's/^third 408 //p' <<<"$out")
# 3 s and the watchdog's tick (500 ms), with the slack the fresh
# connections' cases have
[ "$ms" -ge 2900 ] && [ "$ms" -le 5500 ] ||
	fail "the third request's dripping headers were cut after $ms ms," \
		"expected 3 s"
grep -q '^closed ' <<<"$out" || fail "the connection stayed open: $out"
out=$(cat "$TEST_TMP/keepline.out")
[[ $out == $'first 200\nsecond 200\nthird 0 '*$'\nclosed '* ]] ||
	fail "kept-alive connection: $out $(cat "$TEST_TMP/keepline.err")"
ms=$(sed -n 's/^third 0 //p' <<<"$out")
# from its first byte, or its second: a byte sent as soon as the answer
# is out may go unseen until the next one (es_http.h)
[ "$ms" -ge 2900 ] && [ "$ms" -le 6000 ] ||
	fail "the third request's dripping request line was cut after $ms ms," \
		"expected 3-5 s"

say "5. idle after an answer: closed by the idle timeout (8 s), not at 3 s"
grep -q '^answer 0 200 ' "$TEST_TMP/idle.out" ||
	fail "no answer: $(cat "$TEST_TMP/idle.out")"
ms=$(sed -n 's/^closed 0 //p' "$TEST_TMP/idle.out")
[ -n "$ms" ] && [ "$ms" -ge 7000 ] && [ "$ms" -le 11000 ] ||
	fail "idle kept-alive connection: $(cat "$TEST_TMP/idle.out")"

say "6. a body dripping after complete headers is served"
rc_is body 0
took body 5000 12000
expect_eq "$(head_of body | head -n 1)" "HTTP/1.1 201 Created" \
	"status of the slow-body POST"

say "7. HEADER_TIMEOUT_SECONDS=0: the drip was never cut"
rc_is off 3

say "the 408s count in the metrics"
http GET "$CMD_URL/metrics"
n=$(grep -E '^http_requests_total\{[^}]*route="unmatched",status="408"\}' \
	<<<"$HTTP_BODY" | awk '{ print $2 }')
[ "${n:-0}" -ge 2 ] || fail "408s in the metrics: '${n:-none}'"

say "both services stop cleanly on SIGTERM (the watchdog too)"
expect_eq "$(stop_pid "$CMD_PID")" 0 "exit status of the service"
expect_eq "$(stop_pid "$OFF_PID")" 0 "exit status of the service without a deadline"
