/*
 * es_db.c - PostgreSQL connections, the SQLSTATE map, and long-lived
 * connections that reconnect with a backoff.
 */
#include "es_db.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-events.h>

#include "es_json.h"
#include "es_log.h"
#include "es_utf8.h"

#define SQL_READY "SELECT 1 FROM schema_migrations WHERE name = $1"

#define CONNECT_MS	10000 /* a handshake's bound when nothing says */
#define NOTICE_TEXT_MAX 1024 /* bytes of a notice's text kept in the log */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * `text` in `buf`, cut at a character boundary, made printable ASCII when
 * it is not UTF-8 (a database in another encoding), so that json_pack()
 * takes it. NULL stays NULL.
 */
static const char *log_text(char *buf, size_t len, const char *text)
{
	size_t n;

	if (!text)
		return NULL;
	n = strlen(text);
	if (n >= len) {
		n = len - 1;
		while (n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(buf, text, n);
	buf[n] = '\0';
	if (es_utf8_chars(buf, n, NULL) < 0)
		es_json_printable(buf);
	return buf;
}

/* The log level of a severity ("WARNING", "NOTICE", ...). */
static enum es_log_level notice_level(const char *severity)
{
	if (!severity)
		return ES_LOG_INFO;
	if (strncmp(severity, "DEBUG", 5) == 0)
		return ES_LOG_DEBUG;
	if (strcmp(severity, "WARNING") == 0)
		return ES_LOG_WARN;
	if (strcmp(severity, "ERROR") == 0 || strcmp(severity, "FATAL") == 0 ||
	    strcmp(severity, "PANIC") == 0)
		return ES_LOG_ERROR;
	return ES_LOG_INFO; /* LOG, INFO, NOTICE */
}

/*
 * libpq's notice receiver: a server's NOTICE or WARNING, what it says on
 * an idle connection before closing it (FATAL on shutdown), and libpq's
 * own notices become one JSON log line each, never libpq's default raw
 * line on stderr.
 */
static void log_notice(void *arg, const PGresult *res)
{
	const char *sev =
		PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	char state[6], msg[NOTICE_TEXT_MAX], detail[NOTICE_TEXT_MAX];

	(void)arg;
	es_log(notice_level(sev), "db_notice", "{s:s, s:s?, s:s?, s:s?}",
	       "severity", sev ? sev : "", "sqlstate",
	       log_text(state, sizeof(state),
			PQresultErrorField(res, PG_DIAG_SQLSTATE)),
	       "message",
	       log_text(msg, sizeof(msg),
			PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)),
	       "detail",
	       log_text(detail, sizeof(detail),
			PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL)));
}

/* How many entries a comma-separated list has: 0 for none. */
static size_t list_count(const char *list)
{
	size_t n = 1;

	if (!list || !*list)
		return 0;
	for (; *list; list++)
		n += *list == ',';
	return n;
}

/* The tail of `list` from entry `from` on (a single entry stays). */
static const char *list_from(const char *list, size_t from)
{
	if (list_count(list) <= 1)
		return list;
	for (; *list && from > 0; list++)
		from -= *list == ',';
	return list;
}

/*
 * Whether entry `i` of `list` may be `want`: equal, or, with `wild`,
 * empty (libpq's default stands there). A single entry stands for all.
 */
static int list_is(const char *list, size_t i, const char *want, int wild)
{
	const char *e = list_from(list, i);
	size_t len;

	if (!e || !want)
		return 0;
	len = strcspn(e, ",");
	if (len == 0)
		return wild;
	return strlen(want) == len && !strncmp(e, want, len);
}

static const char *opt(const PQconninfoOption *opts, const char *keyword)
{
	for (; opts && opts->keyword; opts++)
		if (!strcmp(opts->keyword, keyword))
			return opts->val;
	return NULL;
}

/* How many hosts `db`'s conninfo names (host or hostaddr), at least 1. */
static size_t host_count(const PQconninfoOption *opts)
{
	size_t h = list_count(opt(opts, "host")),
	       a = list_count(opt(opts, "hostaddr"));

	return h > a ? h : a > 0 ? a : 1;
}

/*
 * Which of the conninfo's hosts `db` is trying now, by PQhost() and
 * PQport(): the first that names them, else the first with empty entries
 * (defaults) that may stand for them; 0 when none matches.
 */
static size_t host_now(PGconn *db, const PQconninfoOption *opts)
{
	const char *host = opt(opts, "host"), *addr = opt(opts, "hostaddr");
	const char *port = opt(opts, "port");
	size_t i, n = host_count(opts);
	int wild;

	for (wild = 0; wild <= 1; wild++)
		for (i = 0; i < n; i++)
			if ((list_is(host, i, PQhost(db), wild) ||
			     list_is(addr, i, PQhost(db), wild)) &&
			    (list_count(port) == 0 ||
			     list_is(port, i, PQport(db), wild)))
				return i;
	return 0;
}

/*
 * A handshake that went to the next host: libpq's connect_timeout is per
 * host, but libpq keeps it only in its blocking connect, so a
 * non-blocking one stays on a host that never answers. Started again
 * with `db`'s settings, the host lists from the one after the host it is
 * at; NULL when that was the last (or out of memory). (libpq's blocking
 * connect would try a name's other addresses first: here the next name
 * comes.)
 */
static PGconn *next_host(PGconn *db)
{
	PQconninfoOption *opts = PQconninfo(db), *o;
	const char **keys = NULL, **vals = NULL;
	PGconn *next = NULL;
	size_t n = 0, from;

	if (!opts)
		return NULL;
	from = host_now(db, opts) + 1;
	if (from >= host_count(opts))
		goto out;
	for (o = opts; o->keyword; o++)
		n++;
	keys = calloc(n + 1, sizeof(*keys));
	vals = calloc(n + 1, sizeof(*vals));
	if (!keys || !vals)
		goto out;
	n = 0;
	for (o = opts; o->keyword; o++) {
		if (!o->val)
			continue;
		keys[n] = o->keyword;
		vals[n++] = !strcmp(o->keyword, "host") ||
					    !strcmp(o->keyword, "hostaddr") ||
					    !strcmp(o->keyword, "port")
				    ? list_from(o->val, from)
				    : o->val;
	}
	next = PQconnectStartParams(keys, vals, 0);
	if (next)
		PQsetNoticeReceiver(next, log_notice, NULL);
out:
	PQconninfoFree(opts);
	free(keys);
	free(vals);
	return next;
}

/*
 * How long a handshake with one of `db`'s hosts may take: `connect_ms`,
 * or (<= 0) the conninfo's connect_timeout, else CONNECT_MS.
 */
static long host_ms(PGconn *db, long connect_ms)
{
	PQconninfoOption *opts;
	const char *v;

	if (connect_ms > 0)
		return connect_ms;
	connect_ms = CONNECT_MS;
	opts = PQconninfo(db);
	v = opt(opts, "connect_timeout");
	if (v && atol(v) > 0)
		/* as libpq: at least 2 s */
		connect_ms = atol(v) < 2 ? 2000 : atol(v) * 1000;
	PQconninfoFree(opts);
	return connect_ms;
}

PGconn *es_db_open(const char *const *keys, const char *const *vals,
		   int wake_fd, long connect_ms)
{
	PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
	PGconn *db = PQconnectStartParams(keys, vals, 1), *next;
	int64_t end;
	const char *host;

	if (!db)
		return NULL;
	/* before the handshake: the server may warn during it */
	PQsetNoticeReceiver(db, log_notice, NULL);
	connect_ms = host_ms(db, connect_ms);
	end = now_ms() + connect_ms;
	host = PQhost(db);
	while (PQstatus(db) != CONNECTION_BAD && ps != PGRES_POLLING_OK &&
	       ps != PGRES_POLLING_FAILED) {
		struct pollfd p[2] = {
			{ PQsocket(db),
			  ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0 },
			{ wake_fd, POLLIN, 0 },
		};
		int64_t left = end - now_ms();

		if (left <= 0) {
			/* this host's time is up: the next one, if any */
			next = next_host(db);
			if (!next)
				break;
			PQfinish(db);
			db = next;
			ps = PGRES_POLLING_WRITING;
			end = now_ms() + connect_ms;
			host = PQhost(db);
			continue;
		}
		if (poll(p, wake_fd >= 0 ? 2 : 1, (int)left) < 0 &&
		    errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!p[0].revents)
			continue;
		ps = PQconnectPoll(db);
		/*
		 * libpq went on to another host by itself (refused, not
		 * read-write): its time begins. PQhost() points into the
		 * host's own entry, so a name given twice still differs.
		 */
		if (PQhost(db) != host) {
			host = PQhost(db);
			end = now_ms() + connect_ms;
		}
	}
	return db;
}

PGconn *es_db_connect(const char *conninfo, const char *app_name,
		      struct es_error *err)
{
	const char *const keys[] = { "dbname",
				     app_name ? "application_name" : NULL,
				     NULL };
	const char *const vals[] = { conninfo, app_name, NULL };
	PGconn *db = es_db_open(keys, vals, -1, 0);

	if (!db) {
		es_error_set(err, ES_EUNAVAIL, "database unreachable");
		return NULL;
	}
	if (PQstatus(db) != CONNECTION_OK) {
		es_log(ES_LOG_WARN, "db_connect_failed", "{s:s}", "error",
		       PQerrorMessage(db));
		PQfinish(db);
		es_error_set(err, ES_EUNAVAIL, "database unreachable");
		return NULL;
	}
	return db;
}

static int sqlstate_is(const char *state, const char *want)
{
	return state && strcmp(state, want) == 0;
}

/* The kind of a SQLSTATE of a statement that ran (not a lost session). */
static enum es_db_fail fail_of(const char *state, const char *constraint)
{
	if (sqlstate_is(state, "TDV01"))
		return ES_DB_FAIL_VERSION;
	if (sqlstate_is(state, "TDI01"))
		return ES_DB_FAIL_EVENT_ID;
	if (sqlstate_is(state, "40001") || sqlstate_is(state, "40P01") ||
	    (sqlstate_is(state, "23505") && constraint &&
	     strcmp(constraint, "events_stream_id_stream_version_key") == 0))
		return ES_DB_FAIL_RACE;
	return ES_DB_FAIL_OTHER;
}

enum es_db_fail es_db_fail_of(const PGresult *res)
{
	return fail_of(PQresultErrorField(res, PG_DIAG_SQLSTATE),
		       PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME));
}

/* The map of es_db_error() and es_db_state_error(). */
static int state_error(const char *state, const char *constraint,
		       const char *msg, const char *detail,
		       struct es_error *err)
{
	switch (fail_of(state, constraint)) {
	case ES_DB_FAIL_VERSION:
		if (err && err->code == ES_OK && detail)
			err->current_version = strtoll(detail, NULL, 10);
		return es_error_set(err, ES_ECONFLICT, "%s", msg ? msg : "");
	case ES_DB_FAIL_EVENT_ID:
		/* an event id already stored by another append */
		return es_error_set(err, ES_ECONFLICT, "%s", msg ? msg : "");
	case ES_DB_FAIL_RACE:
		if (sqlstate_is(state, "23505"))
			return es_error_set(
				err, ES_ECONFLICT,
				"another writer appended to the stream first");
		/*
		 * serialization failure, deadlock: the client may simply
		 * retry; worth seeing all the same (lock order bugs)
		 */
		es_log(ES_LOG_WARN, "db_serialization", "{s:s, s:s}",
		       "sqlstate", state, "error", msg ? msg : "");
		return es_error_set(err, ES_ECONFLICT,
				    "concurrent update, please retry");
	case ES_DB_FAIL_OTHER:
		break;
	}
	es_log(ES_LOG_ERROR, "db_error", "{s:s, s:s, s:s}", "sqlstate",
	       state ? state : "", "constraint", constraint ? constraint : "",
	       "error", msg ? msg : "");
	return es_error_set(err, ES_EINTERNAL, "unexpected database error");
}

/*
 * The server cannot serve anyone now, nothing was applied, and it may
 * later: a lost connection (class 08), a shutdown or start-up (57P01-3),
 * or a resource it ran out of (53000, 53100 disk full, 53200 out of
 * memory, 53300 too many connections).
 */
static int unavailable(const char *state)
{
	return (state && strncmp(state, "08", 2) == 0) ||
	       sqlstate_is(state, "57P01") || sqlstate_is(state, "57P02") ||
	       sqlstate_is(state, "57P03") || sqlstate_is(state, "53000") ||
	       sqlstate_is(state, "53100") || sqlstate_is(state, "53200") ||
	       sqlstate_is(state, "53300");
}

/*
 * A session that must not be used again: the server under it is
 * read-only now (25006). The mark is a libpq instance datum, so that
 * es_db_broken() sees it wherever the PGconn goes; a reset clears it.
 */
static int doomed_events(PGEventId id, void *info, void *pass)
{
	(void)pass;
	if (id == PGEVT_CONNRESET)
		PQsetInstanceData(((PGEventConnReset *)info)->conn,
				  doomed_events, NULL);
	return 1; /* nothing allocated: nothing to free on destroy */
}

static void doom(PGconn *db)
{
	static int mark;

	if (!db)
		return;
	/* registering twice fails harmlessly: it is there already */
	PQregisterEventProc(db, doomed_events, "es_db_doomed", NULL);
	PQsetInstanceData(db, doomed_events, &mark);
}

int es_db_error(PGconn *db, const PGresult *res, struct es_error *err)
{
	const char *state =
		res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	/*
	 * read_only_sql_transaction: the session is on a server that takes
	 * no writes now (a standby where a primary was, a primary turned
	 * read-only). Nothing was applied; a new session finds the primary
	 * (target_session_attrs=read-write), so this one is dropped.
	 */
	if (sqlstate_is(state, "25006")) {
		const char *msg =
			PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		doom(db);
		es_log(ES_LOG_WARN, "db_read_only", "{s:s}", "error",
		       msg ? msg : "");
		return es_error_set(err, ES_EUNAVAIL,
				    "database unavailable (read-only)");
	}
	if (!res || es_db_broken(db) || unavailable(state)) {
		es_log(ES_LOG_WARN, "db_unavailable", "{s:s, s:s}", "sqlstate",
		       state ? state : "", "error",
		       db ? PQerrorMessage(db) : "");
		return es_error_set(err, ES_EUNAVAIL, "database unavailable");
	}
	if (sqlstate_is(state, "57014")) {
		/*
		 * statement_timeout, or a cancel (the command service's
		 * shutdown sends them): the statement, and its transaction,
		 * did not happen
		 */
		es_log(ES_LOG_WARN, "db_cancelled", "{s:s}", "error",
		       PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
			       ? PQresultErrorField(res,
						    PG_DIAG_MESSAGE_PRIMARY)
			       : "");
		return es_error_set(err, ES_EUNAVAIL,
				    "the statement was cancelled (a timeout, "
				    "or the service is shutting down)");
	}
	return state_error(
		state, PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME),
		PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
		PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL), err);
}

int es_db_state_error(const char *state, const char *msg,
		      const char *current_version, struct es_error *err)
{
	return state_error(state, NULL, msg, current_version, err);
}

int es_db_exec(PGconn *db, const char *sql, struct es_error *err)
{
	PGresult *res = PQexec(db, sql);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK &&
	    PQresultStatus(res) != PGRES_TUPLES_OK)
		ret = es_db_error(db, res, err);
	PQclear(res);
	return ret;
}

int es_db_check_ready(PGconn *db, struct es_error *err)
{
	const char *params[1] = { TANDEM_SCHEMA_LATEST };
	PGresult *res;
	int ret = 0;

	if (!db || es_db_broken(db))
		return es_error_set(err, ES_EUNAVAIL, "database unreachable");
	res = PQexecParams(db, SQL_READY, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		/* 42P01: no migrations table yet */
		if (sqlstate_is(state, "42P01"))
			ret = es_error_set(
				err, ES_EUNAVAIL,
				"schema not migrated: no migrations applied");
		else
			ret = es_db_error(db, res, err);
	} else if (PQntuples(res) != 1) {
		ret = es_error_set(err, ES_EUNAVAIL,
				   "schema not current: '%s' is not applied",
				   TANDEM_SCHEMA_LATEST);
	}
	PQclear(res);
	return ret;
}

int es_db_broken(PGconn *db)
{
	return !db || PQstatus(db) != CONNECTION_OK ||
	       PQinstanceData(db, doomed_events) != NULL;
}

/* ---- statements prepared once per session ---- */

/* The names a session has prepared: its PGconn's instance data. */
struct prepared {
	size_t n, alloc;
	char **name;
	bool stale; /* the server dropped or invalidated one: start over */
};

static void prepared_free(struct prepared *p)
{
	size_t i;

	if (!p)
		return;
	for (i = 0; i < p->n; i++)
		free(p->name[i]);
	free(p->name);
	free(p);
}

/*
 * libpq's events of a connection with prepared statements: a reset is
 * a new session (it has none), and the list goes with the PGconn.
 */
static int prepared_events(PGEventId id, void *info, void *pass)
{
	PGconn *db = NULL;

	(void)pass;
	if (id == PGEVT_CONNRESET)
		db = ((PGEventConnReset *)info)->conn;
	else if (id == PGEVT_CONNDESTROY)
		db = ((PGEventConnDestroy *)info)->conn;
	if (db) {
		prepared_free(PQinstanceData(db, prepared_events));
		PQsetInstanceData(db, prepared_events, NULL);
	}
	return 1;
}

int es_db_is_prepared(const PGconn *db, const char *name)
{
	const struct prepared *p = PQinstanceData(db, prepared_events);
	size_t i;

	for (i = 0; p && i < p->n; i++)
		if (strcmp(p->name[i], name) == 0)
			return 1;
	return 0;
}

/* Remember that the session has `name`; 0, or -1 out of memory. */
static int prepared_add(PGconn *db, const char *name)
{
	struct prepared *p = PQinstanceData(db, prepared_events);
	char *copy;

	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return -1;
		/* registering twice fails harmlessly: it is there already */
		PQregisterEventProc(db, prepared_events, "es_db_prepared",
				    NULL);
		if (!PQsetInstanceData(db, prepared_events, p)) {
			free(p);
			return -1;
		}
	}
	if (p->n == p->alloc) {
		size_t alloc = p->alloc ? 2 * p->alloc : 8;
		char **v = realloc(p->name, alloc * sizeof(*v));

		if (!v)
			return -1;
		p->name = v;
		p->alloc = alloc;
	}
	copy = strdup(name);
	if (!copy)
		return -1;
	p->name[p->n++] = copy;
	return 0;
}

int es_db_set_prepared(PGconn *db, const char *name)
{
	if (prepared_add(db, name) == 0)
		return 0;
	/* a session whose statements we no longer know is dropped */
	doom(db);
	return -1;
}

/*
 * Start the session's statements over: DEALLOCATE ALL, forget every
 * name. Not in a failed transaction (DEALLOCATE would fail there too):
 * then only marked, for the next call.
 */
static void prepared_restart(PGconn *db)
{
	struct prepared *p = PQinstanceData(db, prepared_events);
	size_t i;

	if (!p)
		return;
	p->stale = true;
	if (PQtransactionStatus(db) == PQTRANS_INERROR)
		return;
	PQclear(PQexec(db, "DEALLOCATE ALL"));
	for (i = 0; i < p->n; i++)
		free(p->name[i]);
	p->n = 0;
	p->stale = false;
}

/*
 * The server no longer has the statement (DISCARD ALL, DEALLOCATE, a
 * pooler's new server session: 26000), or its plan no longer fits the
 * tables (an ALTER TABLE changed a result column: 0A000).
 */
static bool prepared_lost(const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return state &&
	       (strcmp(state, "26000") == 0 || strcmp(state, "0A000") == 0);
}

PGresult *es_db_exec_prepared(PGconn *db, const char *name, const char *sql,
			      int nparams, const char *const *values,
			      const int *lengths, const int *formats,
			      int result_format)
{
	const struct prepared *p = PQinstanceData(db, prepared_events);
	PGresult *res;
	int attempt;

	if (p && p->stale)
		prepared_restart(db);
	for (attempt = 0;; attempt++) {
		if (!es_db_is_prepared(db, name)) {
			res = PQprepare(db, name, sql, nparams, NULL);
			if (PQresultStatus(res) != PGRES_COMMAND_OK)
				return res;
			PQclear(res);
			if (es_db_set_prepared(db, name) < 0)
				return NULL;
		}
		res = PQexecPrepared(db, name, nparams, values, lengths,
				     formats, result_format);
		if (!res || !prepared_lost(res))
			return res;
		/*
		 * Once more after starting over, outside a transaction (it
		 * has no other statement to lose) and when we have the text;
		 * otherwise the caller's next try prepares afresh.
		 */
		prepared_restart(db);
		if (attempt > 0 || !sql ||
		    PQtransactionStatus(db) != PQTRANS_IDLE)
			return res;
		PQclear(res);
	}
}

/* ---- struct es_db_link ---- */

/* Whether `fd` (-1: none) is readable within `ms`; waits that long. */
static int woken(int fd, long ms)
{
	struct pollfd p = { fd, POLLIN, 0 };

	if (fd < 0) {
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		return 0;
	}
	return poll(&p, 1, (int)ms) > 0;
}

/*
 * Connect without blocking a stop: the handshake polls the socket and
 * `wake_fd`. Keepalives first, and tcp_user_timeout (a statement whose
 * bytes the peer stopped acknowledging, a host gone mid-query, fails in
 * 20 s, not after TCP's retransmissions of some 15 minutes), the
 * operator's conninfo after them (so it may change them),
 * application_name last (it names our sessions).
 */
static PGconn *link_connect(const struct es_db_link *l)
{
	const char *keys[] = { "keepalives",	      "keepalives_idle",
			       "keepalives_interval", "keepalives_count",
			       "tcp_user_timeout",    "dbname",
			       "application_name",    NULL };
	const char *vals[] = { "1",	"5",	     "2",	  "3",
			       "20000", l->conninfo, l->app_name, NULL };
	PGconn *db = es_db_open(keys, vals, l->wake_fd, l->connect_ms);

	if (!db)
		return NULL;
	if (PQstatus(db) != CONNECTION_OK) {
		es_log(ES_LOG_WARN, "db_connect_failed", "{s:s, s:s}",
		       "session", l->app_name ? l->app_name : "", "error",
		       PQerrorMessage(db));
		PQfinish(db);
		return NULL;
	}
	return db;
}

PGconn *es_db_link_get(struct es_db_link *l, struct es_error *err)
{
	char sql[100];

	if (!es_db_broken(l->db))
		return l->db;
	es_db_link_close(l);
	l->db = link_connect(l);
	if (!l->db) {
		es_error_set(err, ES_EUNAVAIL, "database unreachable");
		goto fail;
	}
	if (l->listen) {
		snprintf(sql, sizeof(sql), "LISTEN %s", l->listen);
		if (es_db_exec(l->db, sql, err) < 0) {
			es_db_link_close(l);
			goto fail;
		}
	}
	l->wait_ms = 0;
	return l->db;
fail:
	es_db_link_backoff(l);
	return NULL;
}

void es_db_link_backoff(struct es_db_link *l)
{
	long ms = l->wait_ms > 0 ? l->wait_ms : l->min_ms;

	woken(l->wake_fd, ms);
	l->wait_ms = ms * 2 > l->max_ms ? l->max_ms : ms * 2;
}

void es_db_link_close(struct es_db_link *l)
{
	PQfinish(l->db);
	l->db = NULL;
}
