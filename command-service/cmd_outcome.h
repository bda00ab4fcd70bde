/*
 * cmd_outcome.h - what became of a transaction whose COMMIT's answer was
 * lost with the connection: asked of the primary of now, on a new
 * connection.
 */
#ifndef CMD_OUTCOME_H
#define CMD_OUTCOME_H

#include <libpq-fe.h>

/*
 * How long cmd_commit_outcome() keeps asking (a failover takes seconds),
 * and how often.
 */
#define CMD_OUTCOME_WAIT_MS 15000
#define CMD_OUTCOME_POLL_MS 250

/*
 * How long one part of a try may take: connecting, per host of the
 * conninfo, and each statement. A try that began before the deadline may
 * end past it, by at most hosts x this + two statements.
 */
#define CMD_OUTCOME_TRY_MS 2000

/*
 * Transaction `xid` appended, at `pos`, an event of the command
 * `command_id` (its metadata's ES_M_COMMAND_ID), on `broken`, whose
 * connection then broke in COMMIT. Asked on new connections made with
 * `broken`'s settings (a multi-host conninfo finds the primary of now)
 * for up to `wait_ms`: 1 committed, 0 never will (aborted, or not on
 * this history), -1 not known (still in progress, unreachable, too old
 * to tell). Logs each answer (commit_outcome).
 * ownership: borrows all; `broken` is neither used nor reset.
 */
int cmd_commit_outcome(PGconn *broken, unsigned long long xid, long long pos,
		       const char *command_id, long wait_ms);

#endif
