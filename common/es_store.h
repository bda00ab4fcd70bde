/*
 * es_store.h - the events table's shared vocabulary: its limits, the
 * expected versions of an append, an append's input (struct
 * es_stream_append) and the events a read returns (struct es_event).
 * Appending is es_append.h's, reading es_read.h's.
 */
#ifndef ES_STORE_H
#define ES_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Expected versions for es_append_batch() (es_append.h): ES_ANY appends
 * whatever the stream's version; ES_NO_STREAM (and 0, the same thing)
 * wants a stream without events; N > 0 wants the stream exactly at
 * version N.
 */
#define ES_ANY	     (-2LL)
#define ES_NO_STREAM (-1LL)

/* Longest stream id, in characters (the events table's check). */
#define ES_STREAM_ID_MAX 200
/* Longest event type, in characters. */
#define ES_EVENT_TYPE_MAX 200
/* Most events one es_read_stream() or es_read_forward() (es_read.h) returns. */
#define ES_READ_LIMIT_MAX 100000

struct es_stream_append {
	const char *stream_id;
	long long expected; /* ES_ANY, ES_NO_STREAM or 0, or N > 0 */
	const json_t *events; /* [{type, data, metadata?, event_id?}] */
	long long version; /* out: the stream's version after the append */
};

/*
 * An event as read. Its data and metadata are the text stored (any valid
 * JSON, numbers of any size included): a reader decodes only what it
 * needs, so that a value it cannot hold in a jansson value stops nothing
 * else. The views decode the payloads of the streams they fold into
 * `payload` (views/payload.h).
 */
struct es_event {
	long long position; /* global_position */
	uint64_t xid; /* transaction_id */
	char *stream_id;
	long long version;
	char event_id[37];
	char *type;
	char *data; /* JSON text as stored, NUL-terminated, or NULL */
	size_t data_len;
	char *metadata; /* the same, for metadata */
	size_t metadata_len;
	json_t *payload; /* `data` decoded, NULL when not (yet) */
	/*
	 * Or `data` decoded as a flat object (struct qry_flat of
	 * query-service/qry_json.h, one allocation freed with free()),
	 * the query side's lighter form of most payloads; NULL when not.
	 */
	void *payload_flat;
	char *payload_error; /* why decoding `data` failed, or NULL */
	char *recorded_at; /* ISO 8601 in UTC, "2024-05-01T12:00:00.123456Z" */
	/*
	 * What the query side's views learned of the event once for all of
	 * them (VIEW_EV_* of query-service/views/payload.h); 0: nothing yet.
	 */
	unsigned char view_flags;
};

struct es_events {
	struct es_event *v;
	size_t n, alloc;
};

#define ES_EVENTS_INIT \
	{              \
		0      \
	}

/* Free the events from the n-th on, keeping the first `n` and the array. */
void es_events_truncate(struct es_events *ev, size_t n);

/* Free every event and the array; `ev` is empty afterwards. */
void es_events_release(struct es_events *ev);

#endif
