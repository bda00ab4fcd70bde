/*
 * payload.h - reading event payloads for the views: typed getters whose
 * errors (ES_EINVALID) name the event, its type and stream, so that a
 * stopped view says exactly where and why. Event types and field names
 * are the contract's, in es_event.h.
 */
#ifndef VIEW_PAYLOAD_H
#define VIEW_PAYLOAD_H

#include <stddef.h>

#include "es_error.h"
#include "es_store.h"

/* Room for recorded_at ("2024-05-01T12:00:00.123456Z") and its NUL. */
#define VIEW_TIME_MAX 40

/*
 * Whether the views fold the events of stream `stream_id` (the account
 * category): only those payloads are decoded.
 */
int view_payload_wanted(const char *stream_id);

/*
 * ev->view_flags: what view_event_check() found, so that each view need
 * not check the stream id and the time of every event again.
 */
#define VIEW_EV_KNOWN	1 /* the other bits are set */
#define VIEW_EV_ACCOUNT 2 /* stream_id is "account-<lower-case uuid>" */
#define VIEW_EV_TIME	4 /* recorded_at has view_event_time()'s form */

/* Fill ev->view_flags from its stream_id and recorded_at. */
void view_event_check(struct es_event *ev);

/*
 * The account id of a stream "account-<uuid>" (the UUID in lower case)
 * into `id`: 1, else 0.
 */
int view_stream_account(const char *stream_id, char id[37]);

/*
 * view_stream_account() of the event's stream, answered from
 * ev->view_flags when they are known.
 */
int view_event_account(const struct es_event *ev, char id[37]);

/*
 * Decode the event's data into ev->payload if the views fold its stream
 * and it is not decoded yet. A payload that cannot be decoded (a valid
 * JSON number beyond what jansson holds, say) leaves payload NULL and
 * says why in ev->payload_error: the getters below then answer
 * ES_EINVALID, so that a view that reads it parks the stream. -1 only
 * when out of memory.
 * Fills ev->view_flags (view_event_check()) first, for every event:
 * call it once the event's stream_id and recorded_at are set.
 * ownership: what it sets belongs to `ev` (es_events_release()).
 */
int view_payload_decode(struct es_event *ev);

/* view_payload_decode() of every event of `evs`; -1 with `err` (OOM). */
int view_payload_decode_all(struct es_events *evs, struct es_error *err);

/*
 * ES_EINVALID "event <position> (<type> of '<stream>'): <what>".
 * Returns -1.
 */
int view_payload_error(const struct es_event *ev, struct es_error *err,
		       const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The integer `key` of the event's data into `*out`; else -1. */
int view_payload_int(const struct es_event *ev, const char *key, long long *out,
		     struct es_error *err);

/*
 * The integer `key` of the event's data into `*out`: 1; 0 when it is
 * missing, not an integer, or the payload is not decoded (no error).
 */
int view_payload_int_if(const struct es_event *ev, const char *key,
			long long *out);

/*
 * The string `key` of the event's data: 1 and `*out` (borrowed from `ev`)
 * when present, 0 and NULL when missing or null and !required; -1 when
 * required and missing, not a string, holding a NUL byte or `max` bytes
 * or more.
 */
int view_payload_str(const struct es_event *ev, const char *key, int required,
		     size_t max, const char **out, struct es_error *err);

/* The UUID string `key` (any case) into `out`, in lower case; else -1. */
int view_payload_uuid(const struct es_event *ev, const char *key, char out[37],
		      struct es_error *err);

/*
 * The currency `key` (three upper-case letters) into `out`: 1 when present,
 * 0 and "" when missing or null and !required, else -1.
 */
int view_payload_currency(const struct es_event *ev, const char *key,
			  int required, char out[4], struct es_error *err);

/*
 * The event's recorded_at into `out` after checking its form,
 * "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" in UTC; else -1.
 */
int view_event_time(const struct es_event *ev, char out[VIEW_TIME_MAX],
		    struct es_error *err);

#endif
