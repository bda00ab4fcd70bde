/* es_store.c - the events a read returns. */
#include "es_store.h"

#include <stdlib.h>
#include <string.h>

static void event_release(struct es_event *e)
{
	free(e->stream_id);
	free(e->type);
	free(e->recorded_at);
	free(e->data);
	free(e->metadata);
	json_decref(e->payload);
	free(e->payload_flat);
	free(e->payload_error);
}

void es_events_truncate(struct es_events *ev, size_t n)
{
	while (ev->n > n)
		event_release(&ev->v[--ev->n]);
}

void es_events_release(struct es_events *ev)
{
	es_events_truncate(ev, 0);
	free(ev->v);
	memset(ev, 0, sizeof(*ev));
}
