/*
 * qry_tail.h - the one log reader of a query-service process: it feeds
 * the in-memory account view (qry_memory.h) in every process, and is the
 * projector that tails the log into the table-backed views, one leader
 * at a time across every query-service process; followers keep the
 * table views' positions current from the shared checkpoints.
 *
 * Leadership is a PostgreSQL advisory lock held by a dedicated session on
 * the read database; every batch is written in one read-database
 * transaction that also checks the fencing epoch and moves the views'
 * checkpoints, so a crash or a paused former leader neither loses nor
 * double-applies an event.
 */
#ifndef QRY_TAIL_H
#define QRY_TAIL_H

#include "es_error.h"
#include "qry_memory.h"
#include "qry_state.h"

struct qry_tail_config {
	const char *write_url; /* the log (LOG_DATABASE_URL), maybe a standby */
	const char
		*listen_url; /* LISTEN here (DATABASE_URL); NULL: write_url */
	const char *read_url; /* views and checkpoints; NULL or "": write_url */
	long batch; /* most events per batch (PROJECTOR_BATCH) */
	long poll_ms; /* fallback poll for new events (POLL_INTERVAL_MS) */
	long leader_retry_ms; /* how often a follower tries to lead */
	struct qry_memory *mem; /* the in-memory view to feed (not rebuild) */
};

struct qry_tail;

/*
 * Start the reader thread of this process: it loads and feeds cfg->mem,
 * competes for leadership, projects while leader, and follows the
 * checkpoints otherwise, reporting every view of view_all[] (names as in
 * view_ops.name) and QRY_MEMORY_VIEW through `st`, which must already
 * know those views.
 * Databases need not be reachable yet: the thread keeps retrying.
 * ownership: borrows `cfg` (copied), cfg->mem and `st` (both must
 * outlive the tail);
 * caller stops and frees it with qry_tail_stop(). NULL with ES_EINTERNAL
 * when the thread cannot start.
 */
struct qry_tail *qry_tail_start(const struct qry_tail_config *cfg,
				struct qry_state *st, struct es_error *err);

/*
 * Stop the thread (promptly: within about a second), release leadership
 * by closing its sessions, and free `t`. NULL is a no-op.
 */
void qry_tail_stop(struct qry_tail *t);

/*
 * `query-service rebuild [view]`: rebuild view `view` (NULL: every view)
 * from the beginning of the log into shadow tables while the live ones
 * keep serving, then swap them in atomically and move the checkpoints.
 * Runs in the caller's thread; logs progress. 0, or -1 with `err` set
 * (ES_ENOTFOUND for an unknown view, ES_EUNAVAIL, ES_EINVALID,
 * ES_EINTERNAL); a failed rebuild leaves the live views untouched.
 * ownership: borrows everything.
 */
int qry_rebuild(const struct qry_tail_config *cfg, const char *view,
		struct es_error *err);

#endif
