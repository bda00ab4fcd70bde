/*
 * cmd_batch.h - group commit: the commands a pool worker holds run in
 * rounds; a round appends the events of all its commands with one
 * statement in one transaction, and each command keeps its own answer.
 */
#ifndef CMD_BATCH_H
#define CMD_BATCH_H

#include <libpq-fe.h>
#include <stddef.h>

#include "cmd_pool.h"

/*
 * The pool's run_batch() (`arg` is the struct cmd_ctx): run one round of
 * the command jobs jobs[0..n) (struct cmd_request, cmd_routes.h) on `db`
 * and answer those it finished. Returns how many it carries over, moved
 * to jobs[0..k) in their order: commands that must decide again on fresh
 * state (a version conflict, a rejection seen on cached state), and
 * those that could not join this round (another command of the round,
 * or of another worker, decides on the same account or key). jobs[0]
 * always joins the round (waiting for its lock stripes if it must), so
 * every command is answered within COMMAND_RETRIES rounds of its own.
 */
size_t cmd_batch_run(struct cmd_job **jobs, size_t n, PGconn *db, void *arg);

#endif
