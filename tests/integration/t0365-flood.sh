#!/usr/bin/env bash
# t0365-flood.sh - one address cannot lock the others out (SPEC section 7).
#
# 1. With the default settings: 1,100 slowloris connections from 127.0.0.1
# to each service drip a header byte every second; meanwhile requests from
# 127.0.0.2 are answered within 1 s, on both services.
# PER_IP_CONNECTION_LIMIT (default 256) closes the flood's connections
# past the limit at once, so MAX_CONNECTIONS (1024) never fills.
#
# 2. Without a per-address limit, the header deadline is what frees the
# slots: 1,100 connections from 127.0.0.1, half of them dripping header
# bytes and half sending nothing, fill all 1,024 slots, and a request
# from 127.0.0.2 waits unanswered in the listen backlog; after
# HEADER_TIMEOUT_SECONDS (4 here) the flood's connections are cut and it
# is served, and so is the next one, although the flood reconnects at
# once every connection that was cut.
#
# The flooders are bounded (each exits by itself after 40 s) and stopped
# by PID, which closes their sockets.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

N=1100
# two floods of N sockets, plus what the shell and curl need
if [ "$(ulimit -n)" -lt $((2 * N + 200)) ]; then
	ulimit -n $((2 * N + 200)) ||
		fail "cannot raise the open files limit to $((2 * N + 200))"
fi

migrate_db
start_service CMD command-service
start_service QRY query-service

# flood PORT TAG IDLE RECONNECT: N connections from 127.0.0.1; all but the
# first IDLE send a request line and then a header byte a second, the
# IDLE ones send nothing. With RECONNECT 1, a connection the server
# closes is opened again at once (the next second). After every round it
# writes "OPEN CLOSED" to TAG.open: the connections open, and how many the
# server has closed so far.
flood()
{
	exec perl -MIO::Socket::INET -MErrno=EAGAIN -e '
		my ($port, $n, $out, $idle, $again) = @ARGV;
		$SIG{PIPE} = "IGNORE";
		sub dial {
			my ($quiet) = @_;
			my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
				PeerPort => $port, LocalAddr => "127.0.0.1",
				Timeout => 2) or return undef;
			$c->blocking(0);
			syswrite($c, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
				unless $quiet;
			return $c;
		}
		my @s = map { [dial($_ <= $idle), $_ <= $idle] } 1 .. $n;
		my ($t0, $closed) = (time, 0);
		while (time - $t0 < 40) {
			my $open = 0;
			for my $e (@s) {
				my $c = $e->[0];
				if ($c) {
					# the server closed it: end of file, or an error
					my $r = sysread($c, my $buf, 4096);
					if ((defined $r && $r == 0) ||
					    (!defined $r && $! != EAGAIN) ||
					    (!$e->[1] && !defined syswrite($c, "a"))) {
						close($c);
						$c = $e->[0] = undef;
						$closed++;
					}
				}
				$c = $e->[0] = dial($e->[1]) if !$c && $again;
				$open++ if $c;
			}
			open(my $f, ">", "$out.tmp") or die;
			print $f "$open $closed\n";
			close($f);
			rename("$out.tmp", $out);
			sleep 1;
		}' "$1" "$N" "$TEST_TMP/$2.open" "$3" "$4"
}

# opened TAG / closed TAG: from TAG.open
opened()
{
	cut -d' ' -f1 "$TEST_TMP/$1.open"
}

closed()
{
	cut -d' ' -f2 "$TEST_TMP/$1.open"
}

# cut_at_least TAG N: the server closed at least N of TAG's connections
cut_at_least()
{
	[ "$(closed "$1")" -ge "$2" ]
}

# get_from2 URL SECONDS: GET URL from 127.0.0.2 within SECONDS; prints
# "STATUS MS" (STATUS 000 when curl failed, MS how long it took).
get_from2()
{
	local t0 code

	t0=$(_lib_now_ms)
	code=$(curl -sS --interface 127.0.0.2 --max-time "$2" -o /dev/null \
		-w '%{http_code}' "$1" 2>"$TEST_TMP/curl.err") || code=000
	echo "$code $(($(_lib_now_ms) - t0))"
}

say "1. the default settings: the per-address limit"
flood "$CMD_PORT" cmd 0 0 &
track_pid $!
CMD_FLOOD=$!
flood "$QRY_PORT" qry 0 0 &
track_pid $!
QRY_FLOOD=$!
wait_for 30 test -s "$TEST_TMP/cmd.open" -a -s "$TEST_TMP/qry.open"
sleep 2 # past a drip round: the refused connections are gone by now

for round in 1 2 3; do
	say "round $round: $(opened cmd) and $(opened qry) slow connections open"
	# the floods do hold connections: the test measures something (read
	# in the first round, long before the header deadline, 10 s, ends
	# them)
	if [ "$round" = 1 ]; then
		for t in cmd qry; do
			[ "$(opened $t)" -ge 200 ] ||
				fail "the $t flood holds only $(opened $t) connections"
		done
	fi
	for s in CMD QRY; do
		eval "url=\$${s}_URL"
		read -r code ms < <(get_from2 "$url/health" 4)
		[ "$code" = 200 ] ||
			fail "$s: GET /health from 127.0.0.2 during the flood:" \
				"status $code after $ms ms: $(cat "$TEST_TMP/curl.err")"
	done
	sleep 1
done
kill "$CMD_FLOOD" "$QRY_FLOOD"
wait "$CMD_FLOOD" "$QRY_FLOOD" || true
say "the floods closed; 127.0.0.1 is served again once the services see it"
wait_for 5 curl -fsS --max-time 1 -o /dev/null "$CMD_URL/health"
wait_for 5 curl -fsS --max-time 1 -o /dev/null "$QRY_URL/health"

say "2. no per-address limit: the header deadline frees the slots"
start_service DL query-service PER_IP_CONNECTION_LIMIT=0 \
	MAX_CONNECTIONS=1024 HEADER_TIMEOUT_SECONDS=4
rm -f "$TEST_TMP/dl.open"
flood "$DL_PORT" dl $((N / 2)) 1 &
track_pid $!
DL_FLOOD=$!
wait_for 30 test -s "$TEST_TMP/dl.open"
t_flood=$(_lib_now_ms)
expect_eq "$(opened dl)" "$N" "connections the flood opened"
read -r code ms < <(get_from2 "$DL_URL/health" 1)
[ "$code" = 000 ] ||
	fail "a request from 127.0.0.2 was answered ($code after $ms ms)" \
		"while the flood held every slot: the test measures nothing"
say "locked out while the flood holds every slot"
# served once the deadline cuts the flood's connections, before the flood
# can take the slots again (the waiting request is ahead of it in the
# backlog): within the deadline, plus a watchdog tick, plus slack
served()
{
	read -r code ms < <(get_from2 "$DL_URL/health" 9)
	[ "$code" = 200 ] && [ "$ms" -le 7000 ] ||
		fail "$1: GET /health from 127.0.0.2: status $code after $ms ms:" \
			"$(cat "$TEST_TMP/curl.err")"
	say "$1: served after $ms ms; the flood's connections cut so far:" \
		"$(closed dl)"
}
served "round 1"
# the flood sees its connections closed (with the next drip, at most 2 s
# later) and opens them again
wait_for 10 cut_at_least dl 1000
served "round 2, the flood back"
# and the reconnected ones are cut in turn
wait_for 10 cut_at_least dl $((N + 1))
t=$(($(_lib_now_ms) - t_flood))
grep -q '"event":"header_timeout"' "$TEST_TMP/DL.log" ||
	fail "no header_timeout line in the log"
kill "$DL_FLOOD"
wait "$DL_FLOOD" || true
say "the flood closed after $t ms; 127.0.0.2 is served at once again"
wait_for 5 curl -fsS --max-time 1 -o /dev/null "$DL_URL/health"
read -r code ms < <(get_from2 "$DL_URL/health" 1)
expect_eq "$code" 200 "GET /health from 127.0.0.2 after the flood"
expect_eq "$(stop_pid "$DL_PID")" 0 "exit status of the service after the flood"
