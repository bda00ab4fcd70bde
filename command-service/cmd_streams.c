/*
 * cmd_streams.c - the raw append: POST /streams/{stream_id}/events with
 * {"expected_version": "any" | "no_stream" | N, "events": [...]}.
 *
 * No aggregate to decide for: parse, validate, append, respond. The
 * store checks the expected version (409 with current_version on a
 * mismatch, 412 when it came from If-Match) and makes a retry that
 * carries the same event ids answer like the first append did.
 */
#include "cmd_streams.h"

#include <stdio.h>

#include "cmd_parse.h"
#include "cmd_routes.h"
#include "es_http.h"
#include "es_store.h"

struct stream_req {
	struct cmd_request base;
	struct raw_append_cmd cmd;
	json_t *events; /* owned: the client's events with our metadata */
	int all_ids; /* every event carries an event_id */
};

/* 0 for "no_stream": the same expectation as version 0. */
static long long as_version(long long expected)
{
	return expected == ES_NO_STREAM ? 0 : expected;
}

/*
 * Whether a conflict may go away by itself: an "any" append lost a race,
 * or (once) a twin with the same event ids committed first, whose answer
 * the next attempt returns.
 */
static int worth_retrying(const struct stream_req *r, int attempt,
			  const struct es_error *err)
{
	return err->code == ES_ECONFLICT &&
	       (r->cmd.expected == ES_ANY || (r->all_ids && attempt == 0));
}

static void append_run(struct cmd_request *cr, PGconn *db)
{
	struct stream_req *r = (struct stream_req *)cr;
	struct es_error err = ES_ERROR_INIT, pre = ES_ERROR_INIT;
	struct es_stream_append s = { 0 };
	char token[ES_APPEND_TOKEN_MAX], etag[32];
	int n;

	s.stream_id = r->cmd.stream_id;
	s.expected = r->cmd.expected;
	s.events = r->events;
	for (n = 0; cmd_retry(cr, n); n++) {
		es_error_release(&err);
		/* append */
		if (cmd_append(cr, db, &s, 1, token, &err) == 0) {
			/* respond */
			cmd_reply(cr, 201,
				  json_pack("{s:I, s:s}", "version",
					    (json_int_t)s.version, "position",
					    token));
			snprintf(etag, sizeof(etag), "\"%lld\"", s.version);
			cmd_reply_header(cr, "ETag", etag);
			cmd_finish(cr, db);
			goto out;
		}
		if (!worth_retrying(r, n, &err))
			break;
	}
	if (!es_error_isset(&err)) {
		es_error_set(
			&err, ES_EUNAVAIL,
			"stream '%s' changed too often to append; try again",
			r->cmd.stream_id);
		err.retry_after = 1;
	}
	if (err.code == ES_ECONFLICT && cr->if_match >= 0 &&
	    err.current_version >= 0) {
		es_error_set(
			&pre, ES_EPRECONDITION,
			"stream '%s' is at version %lld, If-Match wants %lld",
			r->cmd.stream_id, err.current_version, cr->if_match);
		pre.current_version = err.current_version;
		cmd_reply_error(cr, &pre);
	} else {
		cmd_reply_error(cr, &err);
	}
	cmd_finish(cr, db); /* a 409 or 412 is kept with its key */
out:
	es_error_release(&err);
	es_error_release(&pre);
}

static void stream_req_release(struct cmd_request *cr)
{
	struct stream_req *r = (struct stream_req *)cr;

	json_decref(r->events);
	r->events = NULL;
}

/*
 * If-Match and the body's expected_version must agree; "any" in the body
 * leaves the expectation to If-Match.
 */
static int merge_if_match(struct stream_req *r, struct es_error *err)
{
	long long want = r->base.if_match;

	if (want < 0)
		return 0;
	if (r->cmd.expected == ES_ANY) {
		r->cmd.expected = want > 0 ? want : ES_NO_STREAM;
		return 0;
	}
	if (as_version(r->cmd.expected) != want)
		return es_error_set(
			err, ES_EMALFORMED,
			"If-Match wants version %lld but expected_version says %lld",
			want, as_version(r->cmd.expected));
	return 0;
}

void cmd_post_stream_events(struct es_request *req)
{
	struct es_error err = ES_ERROR_INIT;
	struct stream_req *r;
	json_t *ev;
	size_t i;

	r = (struct stream_req *)cmd_request_new(req, sizeof(*r), "append",
						 append_run);
	if (!r)
		return;
	r->base.release = stream_req_release;
	/* parse and validate; the rest runs on a worker */
	if (cmd_parse_raw_append(es_request_param(req, "stream_id"), req->json,
				 &r->cmd, &err) < 0 ||
	    merge_if_match(r, &err) < 0)
		goto fail;
	r->events = json_deep_copy(r->cmd.events);
	if (!r->events) {
		es_error_set(&err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	if (cmd_add_metadata(&r->base, r->events, &err) < 0)
		goto fail;
	r->all_ids = 1;
	json_array_foreach(r->events, i, ev) r->all_ids &=
		json_object_get(ev, "event_id") != NULL;
	cmd_request_submit(&r->base);
	return;
fail:
	cmd_request_fail(req, &r->base, &err);
	es_error_release(&err);
}
