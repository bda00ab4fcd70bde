#!/bin/bash
# t0001-harness - the test library itself, against the real cluster and a
# small stand-in HTTP service (perl, from perl-base).
set -eu -o pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

LIB=$(dirname "$0")/lib.sh
LIB=$(realpath "$LIB")

# gone PID: the process has exited (a zombie counts).
gone()
{
	local s

	s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
	s=${s##*) }
	[ "${s%% *}" = Z ]
}

# try CMD...: run CMD in a subshell; its status in RC, its stderr in ERR_OUT.
RC=
ERR_OUT=
try()
{
	RC=0
	ERR_OUT=$( ("$@") 2>&1 >/dev/null) || RC=$?
}

say "psql_q"
expect_eq "$(psql_q 'SELECT 1 + 1')" 2 "psql_q result"
expect_eq "$(psql_q 'SELECT current_database()')" t0001 "per-test database"
expect_eq "$(psql_q 'SELECT 1, 2' -F ,)" "1,2" "psql_q extra arguments"
try psql_q 'SELECT no_such_column'
expect_eq "$RC" 1 "psql_q on error"

say "new_db, db_url"
url=$(new_db t0001_extra)
expect_eq "$url" "postgresql://$PGUSER@$PGHOST:$PGPORT/t0001_extra" "new_db URI"
expect_eq "$(psql -XAtq -d "$url" -c 'SELECT current_database()')" \
	t0001_extra "new database reachable"
expect_eq "$(db_url x)" "postgresql://$PGUSER@$PGHOST:$PGPORT/x" "db_url"

say "free_port"
p1=$(free_port)
p2=$(free_port)
[ "$p1" != "$p2" ] || fail "free_port returned $p1 twice"
perl -MIO::Socket::INET -e '
	IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
		Listen => 1) or die "cannot bind $ARGV[0]: $!\n";' "$p1" ||
	fail "port $p1 from free_port is not bindable"

say "fail, expect_eq"
try expect_eq a a same
expect_eq "$RC" 0 "expect_eq on equal values"
try expect_eq a b "values"
expect_eq "$RC" 1 "expect_eq on different"
expect_eq "$ERR_OUT" "FAIL: values: expected 'b', got 'a'" "expect_eq message"
try fail boom
expect_eq "$RC" 1 "fail status"
expect_eq "$ERR_OUT" "FAIL: boom" "fail message"

say "wait_for"
(sleep 0.3 && touch "$TEST_TMP/flag") &
wait_for 10 test -f "$TEST_TMP/flag"
try wait_for 1 false
expect_eq "$RC" 1 "wait_for times out"

say "start_service, http, expect_*"
mkdir -p "$TEST_TMP/bin"
cat >"$TEST_TMP/bin/fake-service" <<'EOF'
#!/usr/bin/perl
# Stand-in service: /health, POST /echo, 404 otherwise; exits 0 on TERM.
use strict;
use warnings;
use IO::Socket::INET;

$SIG{TERM} = sub { exit 0 };
my $port = $ENV{PORT} or die "no PORT\n";
my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
	LocalPort => $port, Listen => 64, ReuseAddr => 1)
	or die "cannot listen on 127.0.0.1:$port: $!\n";
print STDERR "fake-service listening on $port\n";
my $n = 0;
while (1) {
	my $c = $srv->accept or next;
	my $line = <$c>;
	next unless defined $line;
	my ($method, $path) = split ' ', $line;
	my %h;
	while (my $l = <$c>) {
		$l =~ s/\r?\n$//;
		last if $l eq '';
		my ($k, $v) = split /:\s*/, $l, 2;
		$h{lc $k} = $v;
	}
	my $body = '';
	read($c, $body, $h{'content-length'}) if $h{'content-length'};
	my ($status, $type, $out, @extra);
	if ($path eq '/health') {
		($status, $type, $out) = (200, 'application/json',
			'{"status":"ok"}');
	} elsif ($path eq '/echo' && $method eq 'POST') {
		$n++;
		($status, $type, $out) = (201, 'application/json', $body);
		@extra = ("Location: /echo/$n",
			"X-Echo-Content-Type: " . ($h{'content-type'} // ''),
			"X-Echo-Test:  " . ($h{'x-test'} // '') . "  ",
			"X-Greeting: " . ($ENV{GREETING} // ''),
			"X-Database: " . ($ENV{DATABASE_URL} // ''));
	} else {
		($status, $type, $out) = (404, 'application/problem+json',
			'{"status":404,"title":"Not Found"}');
	}
	print $c "HTTP/1.1 $status X\r\nContent-Type: $type\r\n",
		"Content-Length: ", length($out), "\r\nConnection: close\r\n",
		map({ "$_\r\n" } @extra), "\r\n";
	print $c $out unless $method eq 'HEAD';
	close $c;
}
EOF
cat >"$TEST_TMP/bin/fake-exit" <<'EOF'
#!/bin/sh
echo "fake-exit: giving up" >&2
exit 3
EOF
chmod +x "$TEST_TMP/bin/fake-service" "$TEST_TMP/bin/fake-exit"
FAKE_BIN=$TEST_TMP/bin
TANDEM_BIN=$FAKE_BIN

start_service FAKE fake-service GREETING=hello DATABASE_URL=postgresql://x/y
[[ $FAKE_URL == "http://127.0.0.1:$FAKE_PORT" ]] || fail "FAKE_URL is $FAKE_URL"
[ -f "$TEST_TMP/FAKE.log" ] || fail "no service log"
grep -q "listening on $FAKE_PORT" "$TEST_TMP/FAKE.log" ||
	fail "service log lacks its output"

http GET "$FAKE_URL/health"
expect_status 200
expect_json .status ok
expect_header content-type application/json

http POST "$FAKE_URL/echo" '{"a":1,"b":"x y"}' -H 'X-Test: yes'
expect_status 201
expect_json .a 1
expect_json .b "x y"
expect_header X-Echo-Content-Type application/json
expect_header x-echo-test yes
expect_header X-Greeting hello
expect_header X-Database postgresql://x/y
expect_eq "$(header LOCATION)" /echo/1 "header is case-insensitive"
expect_eq "$(header X-Missing)" "" "missing header"
has_header location || fail "has_header location"
! has_header x-missing || fail "has_header x-missing"

http POST "$FAKE_URL/echo" '{}' -H 'Content-Type: text/plain'
expect_header X-Echo-Content-Type text/plain

http HEAD "$FAKE_URL/health"
expect_status 200
expect_eq "$HTTP_BODY" "" "HEAD has no body"

http GET "$FAKE_URL/nowhere"
expect_status 404
try expect_status 200
expect_eq "$RC" 1 "expect_status on mismatch"
[[ $ERR_OUT == "FAIL: expected HTTP status 200, got 404; body: "*"Not Found"* ]] ||
	fail "expect_status message: $ERR_OUT"
try expect_json .status 500
expect_eq "$RC" 1 "expect_json on mismatch"
try expect_json .status 404
expect_eq "$RC" 0 "expect_json on match"
try expect_header X-Nope x
expect_eq "$RC" 1 "expect_header on missing"

closed=$(free_port)
try http GET "http://127.0.0.1:$closed/"
expect_eq "$RC" 1 \
	"http to a closed port"
rc=0
HTTP_ALLOW_FAIL=1 http GET "http://127.0.0.1:$closed/" 2>/dev/null || rc=$?
expect_eq "$rc" 7 "curl's exit code with HTTP_ALLOW_FAIL"
expect_eq "$HTTP_STATUS" 000 "status after a transport error"

say "stop_pid"
# shellcheck disable=SC2153 # set by start_service
pid=$FAKE_PID
expect_eq "$(stop_pid "$FAKE_PID")" 0 "exit status after TERM"
gone "$pid" || fail "service $pid still runs"
start_service FAKE2 fake-service
stop_pid "$FAKE2_PID" KILL >/dev/null
expect_eq "$STOP_STATUS" 137 "exit status after KILL"
sleep 30 &
child=$!
expect_eq "$(stop_pid "$child")" "" "no status for a child of another shell"
gone "$child" || fail "plain child $child still runs"
sleep 30 &
child=$!
stop_pid "$child" >/dev/null
expect_eq "$STOP_STATUS" 143 "exit status of a plain child"

try start_service BAD fake-exit
expect_eq "$RC" 1 \
	"start_service of a service that exits"
[[ $ERR_OUT == *"fake-exit: giving up"*"exited with status 3"* ]] ||
	fail "start_service message: $ERR_OUT"
try start_service BAD no-such-binary
expect_eq "$RC" 1 \
	"start_service of a missing binary"

say "pg_own_start, pg_own_restart, pg_own_stop"
pg_own_start
[ "$OWN_PGPORT" != "$PGPORT" ] || fail "own cluster shares the port"
port=$OWN_PGPORT
pid=$OWN_PG_PID
expect_eq "$(psql -XAtq -d "$OWN_DATABASE_URL" -c 'SELECT 42')" 42 \
	"own cluster answers"
expect_eq "$(psql_q 'SELECT current_database()')" t0001 \
	"own cluster leaves DATABASE_URL alone"
pg_own_restart
expect_eq "$OWN_PGPORT" "$port" "port kept across restart"
[ "$OWN_PG_PID" != "$pid" ] || fail "postmaster PID unchanged by restart"
gone "$pid" || fail "old postmaster $pid still runs"
pg_own_stop
gone "$OWN_PG_PID" || fail "postmaster $OWN_PG_PID still runs after stop"
if psql -XAtq -d "$OWN_DATABASE_URL" -c 'SELECT 1' 2>/dev/null; then
	fail "own cluster still answers after pg_own_stop"
fi
pg_own_start
expect_eq "$OWN_PGPORT" "$port" "port kept across stop and start"
expect_eq "$(psql -XAtq -d "$OWN_DATABASE_URL" -c 'SELECT 7')" 7 \
	"own cluster answers after start"

say "clean-up at exit"
mkdir -p "$TEST_TMP/inner"
cat >"$TEST_TMP/inner.sh" <<'EOF'
. "$LIB"
TANDEM_BIN=$FAKE_BIN
start_service FAKE fake-service
sleep 300 &
sleeper=$!
track_pid "$sleeper"
pg_own_start
at_exit "touch '$OUT/at-exit-ran'"
echo "$FAKE_PID $sleeper $OWN_PG_PID $OWN_PG_DIR" >"$OUT/pids"
EOF
outer=$TEST_TMP
LIB=$LIB FAKE_BIN=$FAKE_BIN OUT=$outer TEST_TMP=$outer/inner \
	bash "$outer/inner.sh" || fail "inner test failed"
read -r svc sleeper pgpid pgdir <"$TEST_TMP/pids"
[ -f "$TEST_TMP/at-exit-ran" ] || fail "at_exit command did not run"
wait_for 5 gone "$svc"
wait_for 5 gone "$sleeper"
wait_for 5 gone "$pgpid"
[ ! -e "$pgdir" ] || fail "own cluster $pgdir not destroyed"

say "a failing test reports it"
rc=0
out=$(LIB=$LIB TEST_TMP=$TEST_TMP/inner2 bash -c '. "$LIB"; false; echo after' \
	2>&1) || rc=$?
expect_eq "$rc" 1 "set -e in force"
[[ $out == *"FAIL: exit 1 at line 1: false"* ]] ||
	fail "no failure line in: $out"
[[ $out != *after* ]] || fail "went on after a failure"

say "a test that cannot run here skips"
rc=0
out=$(LIB=$LIB TEST_TMP=$TEST_TMP/inner3 bash -c '. "$LIB";
	at_exit "echo cleaned >&2"; skip no tmpfs here; echo after' 2>&1) ||
	rc=$?
expect_eq "$rc" 77 "skip's exit status"
expect_eq "$out" "SKIP: no tmpfs here"$'\n'"cleaned" "skip's output"
