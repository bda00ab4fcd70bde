#!/usr/bin/env bash
# t0365-flood.sh - one address cannot lock the others out (SPEC section 7).
# 1,100 slowloris connections from 127.0.0.1 to each service drip a
# header byte every second; meanwhile requests from 127.0.0.2 are
# answered within 1 s, on both services. PER_IP_CONNECTION_LIMIT (default
# 256) closes the flood's connections past the limit at once, so
# MAX_CONNECTIONS (1024) never fills. The flooder is bounded (it exits by
# itself after 40 s) and stopped by PID, which closes its sockets.
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

# flood PORT TAG: N connections from 127.0.0.1 that send a request line
# and then one header byte per second each; writes TAG.open (the
# connections still open) after every round.
flood()
{
	exec perl -MIO::Socket::INET -e '
		my ($port, $n, $out) = @ARGV;
		$SIG{PIPE} = "IGNORE";
		my @s;
		for (1 .. $n) {
			my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
				PeerPort => $port, LocalAddr => "127.0.0.1",
				Timeout => 2) or next;
			$c->blocking(0);
			syswrite($c, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ");
			push @s, $c;
		}
		my $t0 = time;
		while (time - $t0 < 40) {
			@s = grep { defined syswrite($_, "a") } @s;
			open(my $f, ">", "$out.tmp") or die; print $f scalar(@s), "\n";
			close($f); rename("$out.tmp", $out);
			sleep 1;
		}' "$1" "$N" "$TEST_TMP/$2.open"
}

flood "$CMD_PORT" cmd &
track_pid $!
CMD_FLOOD=$!
flood "$QRY_PORT" qry &
track_pid $!
QRY_FLOOD=$!
wait_for 30 test -s "$TEST_TMP/cmd.open" -a -s "$TEST_TMP/qry.open"
sleep 2 # past a drip round: the refused connections are gone by now

for round in 1 2 3; do
	say "round $round: $(cat "$TEST_TMP/cmd.open") and" \
		"$(cat "$TEST_TMP/qry.open") slow connections open"
	for s in CMD QRY; do
		eval "url=\$${s}_URL"
		rc=0
		code=$(curl -sS --interface 127.0.0.2 --max-time 1 -o /dev/null \
			-w '%{http_code}' "$url/health" 2>"$TEST_TMP/curl.err") ||
			rc=$?
		[ "$rc" = 0 ] && [ "$code" = 200 ] ||
			fail "$s: GET /health from 127.0.0.2 during the flood:" \
				"curl exit $rc, status $code: $(cat "$TEST_TMP/curl.err")"
	done
	sleep 1
done
# the floods did hold connections: the test measured something
for t in cmd qry; do
	[ "$(cat "$TEST_TMP/$t.open")" -ge 200 ] ||
		fail "the $t flood holds only $(cat "$TEST_TMP/$t.open") connections"
done
kill "$CMD_FLOOD" "$QRY_FLOOD"
wait "$CMD_FLOOD" "$QRY_FLOOD" || true
say "the floods closed; 127.0.0.1 is served again once the services see it"
wait_for 5 curl -fsS --max-time 1 -o /dev/null "$CMD_URL/health"
wait_for 5 curl -fsS --max-time 1 -o /dev/null "$QRY_URL/health"
