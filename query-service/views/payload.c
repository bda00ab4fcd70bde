/*
 * payload.c - reading event payloads for the views: typed getters whose
 * errors name the event.
 */
#include "payload.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

/* The value of `key` in the event's data, or NULL (data not an object). */
static const json_t *field(const struct es_event *ev, const char *key)
{
	return json_is_object(ev->data) ? json_object_get(ev->data, key) : NULL;
}

int view_payload_int(const struct es_event *ev, const char *key, long long *out,
		     struct es_error *err)
{
	const json_t *v = field(ev, key);

	if (!v || json_is_null(v))
		return view_payload_error(ev, err, "'%s' is missing", key);
	if (!json_is_integer(v))
		return view_payload_error(ev, err, "'%s' is not an integer",
					  key);
	*out = json_integer_value(v);
	return 0;
}

int view_payload_str(const struct es_event *ev, const char *key, int required,
		     size_t max, const char **out, struct es_error *err)
{
	const json_t *v = field(ev, key);
	const char *s;

	*out = NULL;
	if (!v || json_is_null(v)) {
		if (!required)
			return 0;
		return view_payload_error(ev, err, "'%s' is missing", key);
	}
	if (!json_is_string(v))
		return view_payload_error(ev, err, "'%s' is not a string", key);
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return view_payload_error(ev, err, "'%s' holds a NUL byte",
					  key);
	if (json_string_length(v) >= max)
		return view_payload_error(
			ev, err, "'%s' is longer than %zu bytes", key, max - 1);
	*out = s;
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

int view_event_time(const struct es_event *ev, char out[VIEW_TIME_MAX],
		    struct es_error *err)
{
	const char *t = ev->recorded_at;
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
	if (!ok)
		return view_payload_error(
			ev, err, "recorded_at '%.40s' is not a UTC time",
			t ? t : "");
	memcpy(out, t, len + 1);
	return 0;
}
