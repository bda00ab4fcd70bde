/*
 * cmd_outcome.c - what became of a transaction whose COMMIT's answer
 * was lost (cmd_outcome.h).
 *
 * Only a primary's answer counts. After a failover the new primary has
 * the history its standby received: an xid past it is "in the future"
 * there (pg_xact_status() says so with 22023: never committed on this
 * history, 0). But when none of our transaction's WAL reached the
 * standby, the new primary hands our xid out again, and the position
 * too (a sequence logs its values ahead, and that record was ours), so
 * the first transaction after the promotion can commit at our position
 * under our xid: "committed" also needs our event there, our command's
 * id in its metadata. That is looked up by a second statement, whose
 * snapshot is taken after the status said committed (the first one's
 * may predate the commit). A transaction that is committing (in the
 * WAL, waiting for a synchronous standby) is "in progress" until it
 * shows: pg_xact_status() asks the proc array before pg_xact. (Not
 * "past the snapshot's xmax": that is the latest finished xid + 1, and
 * a committing xid newer than every finished one is past it, though
 * handed out.)
 */
#include "cmd_outcome.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "es_db.h"
#include "es_event.h"
#include "es_log.h"

#define STR_(x) #x
#define STR(x)	STR_(x)

#define SQL_OUTCOME                       \
	"SELECT pg_xact_status($1::xid8)" \
	" WHERE NOT pg_is_in_recovery()"
#define SQL_OURS                                                          \
	"SELECT 1 FROM events WHERE global_position = $2::bigint"         \
	" AND transaction_id = $1::xid8 AND metadata->>'" ES_M_COMMAND_ID \
	"' = $3"

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* pg_xact_status()'s error for an xid not handed out yet */
static int xid_in_future(const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	return state && !strcmp(state, "22023") && msg &&
	       strstr(msg, "in the future");
}

/* Whether our event is at params[1] under xid params[0]: 1, 0, -1. */
static int outcome_ours(PGconn *db, const char *const *params)
{
	PGresult *res =
		PQexecParams(db, SQL_OURS, 3, NULL, params, NULL, NULL, 0);
	int ret = PQresultStatus(res) != PGRES_TUPLES_OK ? -1
		  : PQntuples(res) == 1			 ? 1
							 : 0;

	PQclear(res);
	return ret;
}

/*
 * One question on `db`: the status's word, or NULL for no answer. Each
 * statement within CMD_OUTCOME_TRY_MS (a lock on events, a server that
 * stopped answering: the try ends, the next one asks again).
 */
static const char *ask(PGconn *db, const char *const *params)
{
	PGresult *res;
	const char *st = NULL;
	int ours;

	if (!db || PQstatus(db) != CONNECTION_OK)
		return NULL;
	res = PQexec(db, "SET statement_timeout = " STR(CMD_OUTCOME_TRY_MS));
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		PQclear(res);
		return NULL;
	}
	PQclear(res);
	res = PQexecParams(db, SQL_OUTCOME, 1, NULL, params, NULL, NULL, 0);
	/* no row: a standby, whose answer does not count */
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		if (PQgetisnull(res, 0, 0))
			st = "unknown";
		else if (!strcmp(PQgetvalue(res, 0, 0), "committed"))
			st = "committed";
		else if (!strcmp(PQgetvalue(res, 0, 0), "aborted"))
			st = "aborted";
		else
			st = "in progress";
	} else if (xid_in_future(res)) {
		st = "future";
	}
	PQclear(res);
	if (st && !strcmp(st, "committed")) {
		ours = outcome_ours(db, params);
		st = ours > 0 ? st : ours == 0 ? "another transaction's" : NULL;
	}
	return st;
}

int cmd_commit_outcome(PGconn *broken, unsigned long long xid, long long pos,
		       const char *command_id, long wait_ms)
{
	PQconninfoOption *opts = PQconninfo(broken), *o;
	const char **keys = NULL, **vals = NULL;
	long long deadline = now_ms() + wait_ms;
	struct timespec pause = { 0, CMD_OUTCOME_POLL_MS * 1000000L };
	char xidtext[24], postext[24];
	const char *params[3] = { xidtext, postext, command_id };
	size_t n = 0;
	int ret = -1;

	snprintf(xidtext, sizeof(xidtext), "%llu", xid);
	snprintf(postext, sizeof(postext), "%lld", pos);
	for (o = opts; o && o->keyword; o++)
		n++;
	keys = calloc(n + 3, sizeof(*keys));
	vals = calloc(n + 3, sizeof(*vals));
	if (!opts || !keys || !vals)
		goto out;
	n = 0;
	/*
	 * es_db_open() expands the first dbname given: an empty one, so that
	 * the database's own name (from PQconninfo()) is taken as a name
	 */
	keys[n] = "dbname";
	vals[n++] = "";
	/* bytes a vanished host stops acknowledging, unless the operator says
	 */
	keys[n] = "tcp_user_timeout";
	vals[n++] = STR(CMD_OUTCOME_TRY_MS);
	for (o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		keys[n] = o->keyword;
		vals[n++] = o->val;
	}
	for (;;) {
		/* each host CMD_OUTCOME_TRY_MS, whatever connect_timeout says
		 */
		PGconn *db = es_db_open(keys, vals, -1, CMD_OUTCOME_TRY_MS);
		const char *st = ask(db, params);

		if (st && !strcmp(st, "committed"))
			ret = 1;
		else if (st &&
			 (!strcmp(st, "aborted") || !strcmp(st, "future") ||
			  !strcmp(st, "another transaction's")))
			ret = 0;
		es_log(ES_LOG_WARN, "commit_outcome", "{s:s, s:s, s:s?}", "xid",
		       xidtext, "status", st ? st : "unreachable", "error",
		       st || !db ? NULL : PQerrorMessage(db));
		PQfinish(db);
		if (ret >= 0 || (st && !strcmp(st, "unknown")) ||
		    now_ms() >= deadline)
			break;
		nanosleep(&pause, NULL);
	}
out:
	PQconninfoFree(opts);
	free(keys);
	free(vals);
	return ret;
}
