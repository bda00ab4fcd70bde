/*
 * payload.c - reading event payloads for the views: typed getters whose
 * errors name the event.
 */
#include "payload.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../qry_json.h"
#include "es_event.h"
#include "es_uuid.h"

int view_payload_error(const struct es_event *ev, struct es_error *err,
		       const char *fmt, ...)
{
	char what[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return es_error_set(err, ES_EINVALID, "event %lld (%s of '%s'): %s",
			    ev->position, ev->type ? ev->type : "?",
			    ev->stream_id ? ev->stream_id : "?", what);
}

int view_payload_wanted(const char *stream_id)
{
	return stream_id && strncmp(stream_id, ES_ACCOUNT_PREFIX,
				    ES_ACCOUNT_PREFIX_LEN) == 0;
}

int view_stream_account(const char *stream_id, char id[37])
{
	size_t n = ES_ACCOUNT_PREFIX_LEN;

	if (!stream_id || strncmp(stream_id, ES_ACCOUNT_PREFIX, n) != 0 ||
	    !es_uuid_is_lower(stream_id + n))
		return 0;
	memcpy(id, stream_id + n, 37);
	return 1;
}

/* Whether `t` has the form view_event_time() accepts. */
static int utc_time(const char *t);

void view_event_check(struct es_event *ev)
{
	char id[37];

	ev->view_flags = VIEW_EV_KNOWN;
	if (view_stream_account(ev->stream_id, id))
		ev->view_flags |= VIEW_EV_ACCOUNT;
	if (utc_time(ev->recorded_at))
		ev->view_flags |= VIEW_EV_TIME;
}

int view_event_account(const struct es_event *ev, char id[37])
{
	if (!(ev->view_flags & VIEW_EV_KNOWN))
		return view_stream_account(ev->stream_id, id);
	if (!(ev->view_flags & VIEW_EV_ACCOUNT))
		return 0;
	memcpy(id, ev->stream_id + ES_ACCOUNT_PREFIX_LEN, 37);
	return 1;
}

int view_payload_decode(struct es_event *ev)
{
	json_error_t jerr;

	view_event_check(ev);
	if (ev->payload || ev->payload_flat || ev->payload_error ||
	    !view_payload_wanted(ev->stream_id))
		return 0;
	if (ev->data) {
		/* most payloads: flat, read without building values */
		ev->payload_flat =
			qry_json_flat(ev->data, ev->data_len, malloc);
		if (ev->payload_flat)
			return 0;
		ev->payload = qry_json_load(ev->data, ev->data_len, &jerr);
	} else {
		snprintf(jerr.text, sizeof(jerr.text), "no data");
	}
	if (ev->payload)
		return 0;
	ev->payload_error = strdup(jerr.text);
	return ev->payload_error ? 0 : -1;
}

int view_payload_decode_all(struct es_events *evs, struct es_error *err)
{
	size_t i;

	for (i = 0; i < evs->n; i++)
		if (view_payload_decode(&evs->v[i]) < 0)
			return es_error_set(err, ES_EINTERNAL, "out of memory");
	return 0;
}

/* A member's value, from either form of the payload. */
enum value_kind { V_MISSING, V_NULL, V_INT, V_STR, V_OTHER };

struct value {
	enum value_kind kind;
	long long i;
	const char *s;
	size_t len;
};

/*
 * The value of `key` in the event's payload into *v (V_MISSING when
 * missing or the payload is not an object); -1 with `err` when the
 * payload could not be decoded.
 */
static int field(const struct es_event *ev, const char *key, struct value *v,
		 struct es_error *err)
{
	const struct qry_flat *f = ev->payload_flat;
	const json_t *j;

	memset(v, 0, sizeof(*v));
	if (f) {
		const struct qry_flat_member *m = qry_flat_get(f, key);

		if (!m)
			return 0;
		switch (m->type) {
		case QRY_FLAT_NULL:
			v->kind = V_NULL;
			break;
		case QRY_FLAT_INT:
			v->kind = V_INT;
			v->i = m->i;
			break;
		case QRY_FLAT_STR:
			v->kind = V_STR;
			v->s = qry_flat_text(f, m->str);
			v->len = m->str_len;
			break;
		default:
			v->kind = V_OTHER;
		}
		return 0;
	}
	if (!ev->payload)
		return view_payload_error(
			ev, err, "the payload cannot be read: %s",
			ev->payload_error ? ev->payload_error : "not decoded");
	j = json_is_object(ev->payload) ? json_object_get(ev->payload, key)
					: NULL;
	if (!j) {
		v->kind = V_MISSING;
	} else if (json_is_null(j)) {
		v->kind = V_NULL;
	} else if (json_is_integer(j)) {
		v->kind = V_INT;
		v->i = json_integer_value(j);
	} else if (json_is_string(j)) {
		v->kind = V_STR;
		v->s = json_string_value(j);
		v->len = json_string_length(j);
	} else {
		v->kind = V_OTHER;
	}
	return 0;
}

int view_payload_int(const struct es_event *ev, const char *key, long long *out,
		     struct es_error *err)
{
	struct value v;

	if (field(ev, key, &v, err) < 0)
		return -1;
	if (v.kind == V_MISSING || v.kind == V_NULL)
		return view_payload_error(ev, err, "'%s' is missing", key);
	if (v.kind != V_INT)
		return view_payload_error(ev, err, "'%s' is not an integer",
					  key);
	*out = v.i;
	return 0;
}

int view_payload_int_if(const struct es_event *ev, const char *key,
			long long *out)
{
	struct value v;

	if (field(ev, key, &v, NULL) < 0 || v.kind != V_INT)
		return 0;
	*out = v.i;
	return 1;
}

int view_payload_str(const struct es_event *ev, const char *key, int required,
		     size_t max, const char **out, struct es_error *err)
{
	struct value v;

	*out = NULL;
	if (field(ev, key, &v, err) < 0)
		return -1;
	if (v.kind == V_MISSING || v.kind == V_NULL) {
		if (!required)
			return 0;
		return view_payload_error(ev, err, "'%s' is missing", key);
	}
	if (v.kind != V_STR)
		return view_payload_error(ev, err, "'%s' is not a string", key);
	if (strlen(v.s) != v.len)
		return view_payload_error(ev, err, "'%s' holds a NUL byte",
					  key);
	if (v.len >= max)
		return view_payload_error(
			ev, err, "'%s' is longer than %zu bytes", key, max - 1);
	*out = v.s;
	return 1;
}

int view_payload_uuid(const struct es_event *ev, const char *key, char out[37],
		      struct es_error *err)
{
	const char *s = NULL;

	if (view_payload_str(ev, key, 1, 37, &s, err) < 0)
		return -1;
	if (es_uuid_parse(s, out) < 0) {
		out[0] = '\0';
		return view_payload_error(ev, err, "'%s' is not a UUID", key);
	}
	return 0;
}

int view_payload_currency(const struct es_event *ev, const char *key,
			  int required, char out[4], struct es_error *err)
{
	const char *s = NULL;
	int r;

	out[0] = '\0';
	r = view_payload_str(ev, key, required, 8, &s, err);
	if (r <= 0)
		return r;
	if (strlen(s) != 3 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' ||
	    s[1] > 'Z' || s[2] < 'A' || s[2] > 'Z')
		return view_payload_error(
			ev, err, "'%s' is not a three-letter currency code",
			key);
	memcpy(out, s, 4);
	return 1;
}

static int digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static int utc_time(const char *t)
{
	size_t len = t ? strlen(t) : 0, i;
	int ok;

	/* YYYY-MM-DDTHH:MM:SS, then .f{1,6}, then Z */
	ok = len >= 20 && len < VIEW_TIME_MAX && digits(t, 4) && t[4] == '-' &&
	     digits(t + 5, 2) && t[7] == '-' && digits(t + 8, 2) &&
	     t[10] == 'T' && digits(t + 11, 2) && t[13] == ':' &&
	     digits(t + 14, 2) && t[16] == ':' && digits(t + 17, 2) &&
	     t[len - 1] == 'Z';
	if (ok && len > 20) {
		ok = t[19] == '.' && len >= 22 && len <= 27;
		for (i = 20; ok && i < len - 1; i++)
			ok = t[i] >= '0' && t[i] <= '9';
	}
	return ok;
}

int view_event_time(const struct es_event *ev, char out[VIEW_TIME_MAX],
		    struct es_error *err)
{
	const char *t = ev->recorded_at;

	if ((ev->view_flags & VIEW_EV_KNOWN) ? !(ev->view_flags & VIEW_EV_TIME)
					     : !utc_time(t))
		return view_payload_error(
			ev, err, "recorded_at '%.40s' is not a UTC time",
			t ? t : "");
	memcpy(out, t, strlen(t) + 1);
	return 0;
}
