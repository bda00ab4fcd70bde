/*
 * cmd_metrics.c - the command service's counters, written out for
 * Prometheus.
 *
 * Global atomics on purpose (see cmd_metrics.h): relaxed increments cost
 * next to nothing on the hot path, and a scrape reads each counter once.
 */
#include "es_array.h"
#include "cmd_metrics.h"

#include <stdatomic.h>
#include <string.h>

#include "es_event.h"
#include "cmd_pool.h"
#include "es_http.h"

static const char *const event_types[] = {
	ES_EV_ACCOUNT_OPENED,
	ES_EV_MONEY_DEPOSITED,
	ES_EV_MONEY_WITHDRAWN,
	ES_EV_TRANSFER_SENT,
	ES_EV_TRANSFER_RECEIVED,
	ES_EV_ACCOUNT_CLOSED,
	ES_EV_TRANSFER_MADE,
	ES_EV_OVERDRAFT_CHANGED,
	"other", /* last: the catch-all */
};

static const char *const commands[] = {
	"open",	 "deposit",	    "withdraw", "transfer",
	"close", "overdraft_limit", "append",	"other",
};

enum outcome {
	OUT_ACCEPTED,
	OUT_REJECTED,
	OUT_INVALID,
	OUT_UNAVAILABLE,
	OUT_ERROR,
	OUT__COUNT
};

static const char *const outcomes[OUT__COUNT] = {
	[OUT_ACCEPTED] = "accepted", [OUT_REJECTED] = "rejected",
	[OUT_INVALID] = "invalid",   [OUT_UNAVAILABLE] = "unavailable",
	[OUT_ERROR] = "error",
};

static const char *const reject_reasons[CMD_REJECT__COUNT] = {
	[CMD_REJECT_QUEUE_FULL] = "queue_full",
	[CMD_REJECT_TIMEOUT] = "timeout",
	[CMD_REJECT_UNAVAILABLE] = "unavailable",
	[CMD_REJECT_STOPPING] = "stopping",
};

static struct {
	atomic_ulong appended[ARRAY_SIZE(event_types)];
	atomic_ulong appends;
	atomic_ulong conflicts;
	atomic_ulong retries;
	atomic_ulong replays;
	atomic_ulong commands[ARRAY_SIZE(commands)][OUT__COUNT];
	atomic_ulong rejects[CMD_REJECT__COUNT];
} stat;

static void bump(atomic_ulong *c, unsigned long n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static unsigned long get(atomic_ulong *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Index of `name` in `names` (n entries, the last one the catch-all). */
static size_t lookup(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; name && i + 1 < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return n - 1;
}

void cmd_metrics_appended(const char *event_type, long n)
{
	if (n > 0)
		bump(&stat.appended[lookup(event_types, ARRAY_SIZE(event_types),
					   event_type)],
		     (unsigned long)n);
}

void cmd_metrics_append(void)
{
	bump(&stat.appends, 1);
}

void cmd_metrics_conflict(void)
{
	bump(&stat.conflicts, 1);
}

void cmd_metrics_retry(void)
{
	bump(&stat.retries, 1);
}

void cmd_metrics_replay(void)
{
	bump(&stat.replays, 1);
}

static enum outcome outcome_of(unsigned int status)
{
	if (status >= 200 && status < 300)
		return OUT_ACCEPTED;
	if (status == 404 || status == 409 || status == 412)
		return OUT_REJECTED;
	if (status >= 400 && status < 500)
		return OUT_INVALID;
	if (status == 503)
		return OUT_UNAVAILABLE;
	return OUT_ERROR;
}

void cmd_metrics_command(const char *command, unsigned int status)
{
	size_t c = lookup(commands, ARRAY_SIZE(commands), command);

	bump(&stat.commands[c][outcome_of(status)], 1);
}

void cmd_metrics_pool_reject(enum cmd_pool_reject why)
{
	if ((unsigned int)why < CMD_REJECT__COUNT)
		bump(&stat.rejects[why], 1);
}

void cmd_metrics_reset(void)
{
	for (size_t i = 0; i < ARRAY_SIZE(stat.appended); i++)
		atomic_store(&stat.appended[i], 0);
	atomic_store(&stat.appends, 0);
	atomic_store(&stat.conflicts, 0);
	atomic_store(&stat.retries, 0);
	atomic_store(&stat.replays, 0);
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		for (size_t o = 0; o < OUT__COUNT; o++)
			atomic_store(&stat.commands[i][o], 0);
	for (size_t i = 0; i < CMD_REJECT__COUNT; i++)
		atomic_store(&stat.rejects[i], 0);
}

static void header(FILE *out, const char *name, const char *type,
		   const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(FILE *out, const char *name, const char *help,
		    atomic_ulong *c)
{
	header(out, name, "counter", help);
	fprintf(out, "%s %lu\n", name, get(c));
}

static void gauge(FILE *out, const char *name, const char *help, long v)
{
	header(out, name, "gauge", help);
	fprintf(out, "%s %ld\n", name, v);
}

int cmd_metrics_write(FILE *out, struct cmd_pool *pool,
		      const struct es_http *http)
{
	header(out, "tandem_events_appended_total", "counter",
	       "Events committed, by event type.");
	for (size_t i = 0; i < ARRAY_SIZE(event_types); i++)
		fprintf(out, "tandem_events_appended_total{type=\"%s\"} %lu\n",
			event_types[i], get(&stat.appended[i]));
	counter(out, "tandem_appends_total", "Append transactions committed.",
		&stat.appends);
	counter(out, "tandem_version_conflicts_total",
		"Appends refused because another writer got there first.",
		&stat.conflicts);
	counter(out, "tandem_command_retries_total",
		"Commands that loaded, decided and appended again after a conflict.",
		&stat.retries);
	counter(out, "tandem_idempotent_replays_total",
		"Requests answered from a stored Idempotency-Key response.",
		&stat.replays);
	header(out, "tandem_commands_total", "counter",
	       "Command requests by command and outcome.");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		for (size_t o = 0; o < OUT__COUNT; o++)
			fprintf(out,
				"tandem_commands_total{command=\"%s\",outcome=\"%s\"} %lu\n",
				commands[i], outcomes[o],
				get(&stat.commands[i][o]));
	header(out, "tandem_db_pool_rejected_total", "counter",
	       "Jobs the connection pool turned away, by reason.");
	for (size_t i = 0; i < CMD_REJECT__COUNT; i++)
		fprintf(out,
			"tandem_db_pool_rejected_total{reason=\"%s\"} %lu\n",
			reject_reasons[i], get(&stat.rejects[i]));
	if (pool) {
		struct cmd_pool_stats ps;

		cmd_pool_stats(pool, &ps);
		gauge(out, "tandem_db_pool_size",
		      "Database connections (and workers) of the pool.",
		      ps.size);
		gauge(out, "tandem_db_pool_in_use",
		      "Pool workers running jobs.", ps.in_use);
		gauge(out, "tandem_db_pool_waiting",
		      "Jobs in the pool beyond one per busy worker (queued, or in a worker's batch).",
		      ps.waiting);
		gauge(out, "tandem_db_pool_connected",
		      "Pool connections that are open and healthy.",
		      ps.connected);
	}
	if (http && es_http_metrics_write(http, out) < 0)
		return -1;
	return ferror(out) ? -1 : 0;
}
