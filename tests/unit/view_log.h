/*
 * view_log.h - a log of events built by hand, for the views' Check suites
 * (check_views.c, check_audit.c): each event as the projector hands it to
 * a fold, its payload decoded.
 */
#ifndef TANDEM_TESTS_VIEW_LOG_H
#define TANDEM_TESTS_VIEW_LOG_H

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../query-service/views/payload.h"
#include "es_store.h"

/*
 * Append an event at `position` to `log`; `data` and `meta` are JSON
 * text (`meta` NULL: none), `time` its recorded_at (NULL: none). The
 * payload is decoded as the projector does before folding; a failure
 * fails the test. Returns the event, owned by `log`.
 */
static inline struct es_event *
view_log_push(struct es_events *log, long long position, const char *stream,
	      long long version, const char *type, const char *data,
	      const char *meta, const char *time)
{
	struct es_event *e;

	if (log->n == log->alloc) {
		log->alloc = log->alloc ? log->alloc * 2 : 16;
		log->v = realloc(log->v, log->alloc * sizeof(*log->v));
		ck_assert_ptr_nonnull(log->v);
	}
	e = &log->v[log->n++];
	memset(e, 0, sizeof(*e));
	e->position = position;
	e->xid = 1000;
	e->stream_id = strdup(stream);
	e->version = version;
	e->type = strdup(type);
	e->data = strdup(data);
	e->data_len = strlen(data);
	e->metadata = meta ? strdup(meta) : NULL;
	e->metadata_len = meta ? strlen(meta) : 0;
	e->recorded_at = time ? strdup(time) : NULL;
	/* last, as the readers do: it checks the fields set above */
	ck_assert_int_eq(view_payload_decode(e), 0);
	return e;
}

#endif
