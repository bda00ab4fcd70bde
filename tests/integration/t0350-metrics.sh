#!/usr/bin/env bash
# t0350-metrics.sh - GET /metrics of the command service: valid Prometheus
# text (every line parses, every family has HELP and TYPE, histograms are
# cumulative) and counters with the right values after known requests,
# on two instances sharing one database: events appended by type, appends,
# version conflicts (an instance whose cached state another instance made
# stale), retries, idempotent replays, commands by outcome, pool gauges,
# HTTP requests by route and status. The pool's default size: two
# connections per CPU the service may run on (taskset), 2 to 32.
set -eu -o pipefail
. "$(dirname "$0")/lib.sh"

export MIGRATIONS_DIR=$TANDEM_ROOT/migrations

# Check Prometheus text format 0.0.4 on stdin; prints problems, exit 1.
prom_check()
{
	perl -e '
		my (%type, %help, %seen, %done, @bad, $cur);
		my $name = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
		my $lval = qr/"(?:[^"\\\n]|\\[\\"n])*"/;
		my $num = qr/[-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN)/;
		my %hist;
		local $/; my $text = <STDIN>;
		push @bad, "empty" unless length $text;
		push @bad, "no final newline" unless $text =~ /\n\z/;
		for my $l (split /\n/, $text) {
			if ($l =~ /^# HELP ($name) (.*)$/) {
				push @bad, "second HELP for $1" if $help{$1}++;
				next;
			}
			if ($l =~ /^# TYPE ($name) (counter|gauge|histogram|summary|untyped)$/) {
				push @bad, "second TYPE for $1" if $type{$1};
				push @bad, "TYPE after samples of $1" if $done{$1} || ($cur // "") eq $1;
				$type{$1} = $2;
				next;
			}
			if ($l =~ /^#/) { next; }
			unless ($l =~ /^($name)(\{(?:$name=$lval(?:,$name=$lval)*,?)?\})? ($num)(?: -?[0-9]+)?$/) {
				push @bad, "bad line: $l";
				next;
			}
			my ($n, $labels, $v) = ($1, $2 // "", $3);
			my $fam = $n;
			my ($base) = $n =~ /^(.*)_(?:bucket|sum|count)$/;
			$fam = $base if !$type{$n} && defined $base &&
				($type{$base} // "") =~ /^(?:histogram|summary)$/;
			push @bad, "no TYPE before $n" unless $type{$fam};
			push @bad, "no HELP for $fam" unless $help{$fam};
			if (($cur // "") ne $fam) {
				push @bad, "samples of $fam are not together" if $done{$fam};
				$done{$cur} = 1 if defined $cur;
				$cur = $fam;
			}
			push @bad, "duplicate series $n$labels" if $seen{"$n$labels"}++;
			if ($n =~ /_bucket$/ && ($type{$fam} // "") eq "histogram") {
				(my $series = $labels) =~ s/,?le="[^"]*"//;
				my $prev = $hist{$series};
				push @bad, "bucket not cumulative: $l"
					if defined $prev && $v < $prev;
				$hist{$series} = $v;
				$hist{"inf$series"} = $v if $labels =~ /le="\+Inf"/;
			}
			if ($n =~ /_count$/ && ($type{$fam} // "") eq "histogram") {
				push @bad, "+Inf bucket differs from count: $l"
					unless ($hist{"inf$labels"} // -1) == $v;
			}
		}
		print "$_\n" for @bad;
		exit(@bad ? 1 : 0);'
}

# scrape PREFIX: GET /metrics of that instance into $TEST_TMP/PREFIX.prom,
# checked.
scrape()
{
	local url_var=${1}_URL

	http GET "${!url_var}/metrics"
	expect_status 200
	expect_header Content-Type "text/plain; version=0.0.4; charset=utf-8"
	printf '%s\n' "$HTTP_BODY" >"$TEST_TMP/$1.prom"
	prom_check <"$TEST_TMP/$1.prom" >"$TEST_TMP/$1.prom.bad" ||
		fail "$1: /metrics is not valid Prometheus text:" \
			"$(head -5 "$TEST_TMP/$1.prom.bad")"
}

# value PREFIX SERIES: the sample's value in the last scrape of PREFIX.
value()
{
	awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print "missing" }' \
		"$TEST_TMP/$1.prom"
}

expect_metric()
{
	expect_eq "$(value "$1" "$2")" "$3" "$1: $2"
}

say "the check itself catches broken text"
printf 'x_total 1\n' | prom_check >/dev/null && fail "no TYPE passed"
printf '# HELP x_total X.\n# TYPE x_total counter\nx_total{a="b} 1\n' |
	prom_check >/dev/null && fail "a bad label passed"
printf '# HELP x_total X.\n# TYPE x_total counter\nx_total 1\nx_total 2\n' |
	prom_check >/dev/null && fail "a duplicate series passed"
printf '# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n' |
	prom_check >/dev/null || fail "a good family failed"

migrate_db
start_service A command-service BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=3
start_service B command-service BIND_ADDRESS=127.0.0.1 DB_POOL_SIZE=2

say "a fresh instance: all counters zero, pool gauges set"
scrape A
expect_metric A 'tandem_events_appended_total{type="AccountOpened"}' 0
expect_metric A tandem_appends_total 0
expect_metric A tandem_version_conflicts_total 0
expect_metric A tandem_db_pool_size 3
expect_metric A tandem_db_pool_in_use 0
expect_metric A tandem_db_pool_waiting 0

say "requests on A and B"
http POST "$A_URL/accounts" '{"owner":"Xavier","currency":"EUR"}'
expect_status 201
X=$(jq -r .account_id <<<"$HTTP_BODY")
http POST "$A_URL/accounts" '{"owner":"Yvonne","currency":"EUR"}'
expect_status 201
Y=$(jq -r .account_id <<<"$HTTP_BODY")
http POST "$A_URL/accounts/$X/deposits" '{"amount":100}'
expect_status 201
# B appends to X behind A's back: A's cached X is stale now
http POST "$B_URL/accounts/$X/deposits" '{"amount":50}'
expect_status 201
expect_json .version 3
# A appends on its stale state, conflicts once, reloads and succeeds
http POST "$A_URL/accounts/$X/deposits" '{"amount":25}'
expect_status 201
expect_json .version 4
expect_json .balance 175
http POST "$A_URL/transfers" "{\"from\":\"$X\",\"to\":\"$Y\",\"amount\":10}"
expect_status 201
http POST "$A_URL/streams/order-1/events" \
	'{"expected_version":"no_stream","events":[{"type":"OrderPlaced","data":{}}]}'
expect_status 201

http POST "$B_URL/accounts" '{"owner":"Zoe","currency":"EUR"}'
expect_status 201
Z=$(jq -r .account_id <<<"$HTTP_BODY")
http POST "$B_URL/accounts" '{"owner":"","currency":"euro"}'
expect_status 422
http POST "$B_URL/accounts/$Z/withdrawals" '{"amount":10}'
expect_status 409
http POST "$B_URL/accounts/$Z/deposits" '{"amount":5}' \
	-H 'Idempotency-Key: t0350-key-1'
expect_status 201
http POST "$B_URL/accounts/$Z/deposits" '{"amount":5}' \
	-H 'Idempotency-Key: t0350-key-1'
expect_status 201
expect_header Idempotent-Replayed true

say "A's counters"
scrape A
expect_metric A 'tandem_events_appended_total{type="AccountOpened"}' 2
expect_metric A 'tandem_events_appended_total{type="MoneyDeposited"}' 2
expect_metric A 'tandem_events_appended_total{type="MoneyWithdrawn"}' 0
expect_metric A 'tandem_events_appended_total{type="TransferSent"}' 1
expect_metric A 'tandem_events_appended_total{type="TransferReceived"}' 1
expect_metric A 'tandem_events_appended_total{type="AccountClosed"}' 0
expect_metric A 'tandem_events_appended_total{type="TransferMade"}' 1
expect_metric A 'tandem_events_appended_total{type="other"}' 1
expect_metric A tandem_appends_total 6
expect_metric A tandem_version_conflicts_total 1
[ "$(value A tandem_command_retries_total)" -ge 1 ] ||
	fail "A: no retry after the conflict"
expect_metric A tandem_idempotent_replays_total 0
expect_metric A 'tandem_commands_total{command="open",outcome="accepted"}' 2
expect_metric A 'tandem_commands_total{command="deposit",outcome="accepted"}' 2
expect_metric A 'tandem_commands_total{command="transfer",outcome="accepted"}' 1
expect_metric A 'tandem_commands_total{command="append",outcome="accepted"}' 1
expect_metric A 'tandem_commands_total{command="deposit",outcome="rejected"}' 0
expect_metric A 'tandem_db_pool_rejected_total{reason="queue_full"}' 0
expect_metric A tandem_db_pool_size 3
expect_metric A tandem_db_pool_in_use 0
expect_metric A tandem_db_pool_waiting 0
c=$(value A tandem_db_pool_connected)
if [ "$c" -lt 1 ] || [ "$c" -gt 3 ]; then
	fail "A: $c pool connections"
fi
expect_metric A 'http_requests_total{method="POST",route="/accounts/{id}/deposits",status="201"}' 2
expect_metric A 'http_requests_total{method="POST",route="/accounts",status="201"}' 2
expect_metric A 'http_request_duration_seconds_count{method="POST",route="/accounts/{id}/deposits"}' 2
expect_metric A 'http_request_duration_seconds_bucket{method="POST",route="/accounts/{id}/deposits",le="+Inf"}' 2
# the scrapes themselves: the first one, and this one still in flight
expect_metric A 'http_requests_total{method="GET",route="/metrics",status="200"}' 1

say "B's counters"
scrape B
expect_metric B 'tandem_events_appended_total{type="AccountOpened"}' 1
expect_metric B 'tandem_events_appended_total{type="MoneyDeposited"}' 2
expect_metric B tandem_appends_total 3
expect_metric B tandem_version_conflicts_total 0
expect_metric B tandem_idempotent_replays_total 1
expect_metric B 'tandem_commands_total{command="open",outcome="accepted"}' 1
expect_metric B 'tandem_commands_total{command="open",outcome="invalid"}' 1
expect_metric B 'tandem_commands_total{command="withdraw",outcome="rejected"}' 1
expect_metric B 'tandem_commands_total{command="deposit",outcome="accepted"}' 3
expect_metric B 'http_requests_total{method="POST",route="/accounts",status="422"}' 1
expect_metric B tandem_db_pool_size 2

say "the counters match the events table"
# a transfer's TransferMade in its own stream too (issue 12)
expect_eq "$(psql_q "SELECT count(*) FROM events")" 11 "events stored"

say "HEAD /metrics"
http HEAD "$A_URL/metrics"
expect_status 200
expect_eq "$(stop_pid "$A_PID")" 0 "A exit status"
expect_eq "$(stop_pid "$B_PID")" 0 "B exit status"

say "DB_POOL_SIZE 0: two connections per CPU of the service's affinity"
# The CPUs in a process's affinity list ("0-3,6" is 5).
cpus_of()
{
	sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "/proc/$1/status" |
		tr ',' '\n' | awk -F- '{ n += NF == 2 ? $2 - $1 + 1 : 1 }
			END { print n }'
}
# a service started from a shell pinned to one CPU inherits the pin
mask=$(taskset -pc $$ | sed 's/.*: //')
taskset -pc "$(cut -d, -f1 <<<"${mask%%-*}")" $$ >/dev/null
start_service P command-service BIND_ADDRESS=127.0.0.1
taskset -pc "$mask" $$ >/dev/null
start_service U command-service BIND_ADDRESS=127.0.0.1
expect_eq "$(cpus_of "$P_PID")" 1 "P's CPUs"
scrape P
expect_metric P tandem_db_pool_size 2
cpus=$(cpus_of "$U_PID")
want=$((2 * cpus > 32 ? 32 : 2 * cpus))
scrape U
expect_metric U tandem_db_pool_size "$want"
# with one CPU online, two per online CPU (the old default) is 2 as well
[ "$(getconf _NPROCESSORS_ONLN)" -gt 1 ] ||
	say "one CPU online: the pinned service cannot tell affinity from online CPUs"
expect_eq "$(stop_pid "$P_PID")" 0 "P exit status"
expect_eq "$(stop_pid "$U_PID")" 0 "U exit status"
