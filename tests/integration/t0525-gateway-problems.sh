#!/usr/bin/env bash
# t0525-gateway-problems.sh - one problem type per status (SPEC section 7):
# what the gateway answers itself (deploy/gateway/routes.conf) carries the
# type and title the services give for the same status: 400 for a request
# nginx cannot parse, 404 for a path neither side has, 405 for a method
# neither side takes (with the services' Allow), 413 past the gateway's
# body cap. The services' own answers are the reference, asked on their
# ports in the same run. (t0526 asks every route's path.)
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

migrate_db
start_service CMD command-service MAX_BODY_BYTES=4096
start_service QRY query-service

GW_DIR=$TEST_TMP/gw
GW_PORT=$(free_port)
"$TANDEM_ROOT/scripts/gateway" conf "$GW_DIR" "$GW_PORT" \
	"127.0.0.1:$CMD_PORT" "127.0.0.1:$QRY_PORT" ||
	fail "scripts/gateway conf failed"
"$TANDEM_ROOT/scripts/gateway" test "$GW_DIR" ||
	fail "scripts/gateway test: $(tail -n 5 "$GW_DIR/error.log" 2>/dev/null)"
"$TANDEM_ROOT/scripts/gateway" exec "$GW_DIR" 2>"$GW_DIR/stderr.log" &
GW_PID=$!
track_pid "$GW_PID"
# SIGTERM to the master before lib.sh's SIGKILL, so its workers go too
at_exit 'kill -TERM "$GW_PID" 2>/dev/null || true; sleep 0.3'
GW=http://127.0.0.1:$GW_PORT
wait_for 10 curl -fsS --max-time 2 -o /dev/null "$GW/health"

# kind: "status type title" of the last answer, problem+json required
kind()
{
	expect_header Content-Type application/problem+json
	jq -r '"\(.status) \(.type) \(.title)"' <<<"$HTTP_BODY"
}

say "404: a path neither side has"
http GET "$QRY_URL/nope"
expect_status 404
want=$(kind)
http GET "$GW/nope"
expect_status 404
expect_eq "$(kind)" "$want" "the gateway's 404"

say "405: a method neither side takes"
http DELETE "$QRY_URL/events"
expect_status 405
want=$(kind)
allow=$(header Allow)
http DELETE "$GW/events"
expect_status 405
expect_header Allow "$allow"
expect_eq "$(kind)" "$want" "the gateway's 405"

say "413: past the gateway's body cap (1 MiB)"
http POST "$CMD_URL/accounts" "$(printf '{"owner":"%05000d"}' 0)"
expect_status 413
want=$(kind)
head -c 1100000 /dev/zero | tr '\0' 'x' >"$TEST_TMP/big"
http POST "$GW/accounts" "" --data-binary "@$TEST_TMP/big" \
	-H 'Content-Type: application/json'
expect_status 413
expect_eq "$(kind)" "$want" "the gateway's 413"

say "400: a request the gateway cannot parse (HTTP/1.1 without Host)"
http POST "$CMD_URL/accounts" '{"owner":'
expect_status 400
want=$(kind)
raw=$(perl -MIO::Socket::INET -e '
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
		PeerPort => $ARGV[0], Timeout => 5) or die "connect: $!";
	print $s "GET /health HTTP/1.1\r\nConnection: close\r\n\r\n";
	local $/; print scalar <$s>;' "$GW_PORT")
[[ $raw == "HTTP/1.1 400 "* ]] || fail "no 400 from the gateway: $raw"
HTTP_HEADERS=${raw%%$'\r\n\r\n'*}
HTTP_HEADERS=${HTTP_HEADERS//$'\r'/}
HTTP_BODY=${raw#*$'\r\n\r\n'}
expect_eq "$(kind)" "$want" "the gateway's 400"

say "400: a request line the gateway cannot parse (a lowercase method)"
raw=$(perl -MIO::Socket::INET -e '
	my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
		PeerPort => $ARGV[0], Timeout => 5) or die "connect: $!";
	print $s "get /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	local $/; print scalar <$s>;' "$GW_PORT")
[[ $raw == "HTTP/1.1 400 "* ]] || fail "no 400 from the gateway: $raw"
HTTP_HEADERS=${raw%%$'\r\n\r\n'*}
HTTP_HEADERS=${HTTP_HEADERS//$'\r'/}
HTTP_BODY=${raw#*$'\r\n\r\n'}
expect_eq "$(kind)" "$want" "the gateway's 400 for a bad request line"
