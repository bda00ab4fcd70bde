/*
 * cmd_notify.h - tell tailing readers that events were appended.
 *
 * NOTIFY inside an appending transaction takes a database-wide lock at
 * commit, which serialises every append's commit. So appends never
 * notify: after a commit they poke this module, and one thread on its own
 * connection sends `NOTIFY` on ES_CHANNEL_EVENTS (es_event.h) outside any
 * append, coalescing the pokes that came in while the previous NOTIFY was on
 * its way. The readers (query services) also poll, so a lost hint only costs
 * latency.
 */
#ifndef CMD_NOTIFY_H
#define CMD_NOTIFY_H

#include <stdbool.h>

#include "es_error.h"

struct cmd_notify;

/*
 * Start the notifier thread; it connects lazily and reconnects with
 * backoff (es_db_link), so it starts while the database is down.
 * ownership: borrows `conninfo`; caller frees with cmd_notify_stop().
 */
struct cmd_notify *cmd_notify_start(const char *conninfo, struct es_error *err);

/* Events were committed: send a hint soon. Cheap; NULL is a no-op. */
void cmd_notify_poke(struct cmd_notify *n);

/*
 * Stop the thread, close the connection, free `n` (NULL is a no-op).
 * Waits up to `wait_ms` for a NOTIFY under way; false when it did not
 * end in time: then `n` is left to the thread, never freed.
 */
bool cmd_notify_stop(struct cmd_notify *n, long wait_ms);

#endif
