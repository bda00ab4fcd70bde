/*
 * cmd_parse.c - parse and validate command bodies into commands.
 *
 * Every getter records its own field problem and the parsers go on, so
 * one answer lists every bad field. The body has already passed
 * es_json_parse_object(): numbers beyond int64 (9223372036854775808) and
 * reals that overflow (1e400) never get here, jansson refuses them and
 * the client gets 400 "too big integer" / "real number overflow"; lone
 * surrogates (\ud800) and invalid UTF-8 are 400 the same way.
 */
#include "cmd_parse.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "es_event.h"
#include "es_json.h"
#include "es_store.h"
#include "es_utf8.h"
#include "es_uuid.h"

/* Unknown fields listed one by one before the rest are only counted. */
#define UNKNOWN_LISTED_MAX 32
/* Events one raw append may carry. */
#define RAW_EVENTS_MAX 1000
/* Bytes of a client's field name or path id echoed back. */
#define ECHO_MAX 64

static const char *kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a number with a fraction or exponent";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "unknown";
}

/*
 * A printable copy of client bytes for messages: at most ECHO_MAX bytes,
 * every byte that is not printable ASCII as '?', "..." when cut.
 */
static void echo_copy(char *out, size_t size, const char *s)
{
	size_t len = strlen(s);

	snprintf(out, size, "%.*s%s", ECHO_MAX, s, len > ECHO_MAX ? "..." : "");
	es_json_printable(out);
}

/*
 * The same for a field name, which jansson has checked is UTF-8: keep
 * its characters ("clé" stays "clé"), cut at a character boundary,
 * control characters as '?'.
 */
static void echo_key(char *out, size_t size, const char *key)
{
	size_t len = strlen(key), n = len, i;

	if (es_utf8_chars(key, len, NULL) < 0) {
		echo_copy(out, size, key);
		return;
	}
	if (n > ECHO_MAX) {
		n = ECHO_MAX;
		while (n > 0 && ((unsigned char)key[n] & 0xc0) == 0x80)
			n--;
	}
	snprintf(out, size, "%.*s%s", (int)n, key, n < len ? "..." : "");
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = '?';
}

/* The body must be an object; NULL counts as {} (a body-less close). */
static int check_object(const json_t *body, struct es_error *err)
{
	if (body && !json_is_object(body))
		return es_error_set(err, ES_EMALFORMED,
				    "request body must be a JSON object");
	return 0;
}

static bool is_known(const char *key, const char *const *known)
{
	for (; *known; known++)
		if (!strcmp(key, *known))
			return true;
	return false;
}

/*
 * A problem for every key of `obj` not in `known` (NULL-terminated);
 * `prefix` goes before the key in the field name ("events[2].").
 * Past UNKNOWN_LISTED_MAX, the last listed one says how many were left.
 */
static int check_known(const json_t *obj, const char *prefix,
		       const char *const *known, struct es_error *err)
{
	char field[2 * ECHO_MAX], shown[ECHO_MAX + 8], last[sizeof(field)];
	size_t unknown = 0;
	const char *key;
	json_t *v;

	if (!obj)
		return 0;
	last[0] = '\0';
	/* json_object_foreach() wants a mutable object; it only reads */
	json_object_foreach((json_t *)obj, key, v)
	{
		if (is_known(key, known))
			continue;
		echo_key(shown, sizeof(shown), key);
		snprintf(field, sizeof(field), "%s%s", prefix, shown);
		if (++unknown < UNKNOWN_LISTED_MAX)
			es_error_field(err, field, "unknown field");
		else if (unknown == UNKNOWN_LISTED_MAX)
			memcpy(last, field, sizeof(field));
	}
	if (unknown == UNKNOWN_LISTED_MAX)
		es_error_field(err, last, "unknown field");
	else if (unknown > UNKNOWN_LISTED_MAX)
		es_error_field(
			err, last,
			"unknown field; %zu more unknown fields are not listed",
			unknown - UNKNOWN_LISTED_MAX);
	return unknown ? -1 : 0;
}

/*
 * Integer `key` of `obj` in [min, max] into *out. Returns 1 when found,
 * 0 when absent or null (a problem "is required" if `required`), -1 with
 * a field problem for anything else.
 */
static int get_int(const json_t *obj, const char *field, const char *key,
		   bool required, long long min, long long max, long long *out,
		   struct es_error *err)
{
	const json_t *v = json_object_get(obj, key);
	long long i;

	if (!v || json_is_null(v)) {
		if (required)
			return es_error_field(err, field, "is required");
		return 0;
	}
	if (!json_is_integer(v))
		return es_error_field(err, field, "must be an integer, not %s",
				      kind(v));
	i = json_integer_value(v);
	if (i < min)
		return min == 1 ? es_error_field(err, field,
						 "must be greater than 0")
				: es_error_field(err, field,
						 "must be at least %lld", min);
	if (i > max)
		return es_error_field(err, field, "must be at most %lld", max);
	*out = i;
	return 1;
}

/*
 * String `key` of `obj`, min..max characters (code points), without
 * control characters unless `control_ok`. Returns as get_int().
 * ownership: *out borrows from `obj`.
 */
static int get_text(const json_t *obj, const char *field, const char *key,
		    bool required, long min, long max, bool control_ok,
		    const char **out, struct es_error *err)
{
	const json_t *v = json_object_get(obj, key);
	bool control;
	long n;

	if (!v || json_is_null(v)) {
		if (required)
			return es_error_field(err, field, "is required");
		return 0;
	}
	if (!json_is_string(v))
		return es_error_field(err, field, "must be a string, not %s",
				      kind(v));
	n = es_utf8_chars(json_string_value(v), json_string_length(v),
			  &control);
	if (n < 0)
		return es_error_field(err, field, "must be valid UTF-8");
	if (json_string_length(v) != strlen(json_string_value(v)))
		return es_error_field(err, field,
				      "must not contain NUL characters");
	if (control && !control_ok)
		return es_error_field(err, field,
				      "must not contain control characters");
	if (n < min || n > max) {
		if (min > 0)
			return es_error_field(
				err, field,
				"must be %ld to %ld characters, not %ld", min,
				max, n);
		return es_error_field(err, field,
				      "must be at most %ld characters, not %ld",
				      max, n);
	}
	*out = json_string_value(v);
	return 1;
}

/* A UUID `key` of `obj` into out[37], lower-case. Returns as get_int(). */
static int get_uuid(const json_t *obj, const char *key, bool required,
		    char out[37], struct es_error *err)
{
	const json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v)) {
		if (required)
			return es_error_field(err, key, "is required");
		return 0;
	}
	if (!json_is_string(v))
		return es_error_field(err, key, "must be a string, not %s",
				      kind(v));
	if (json_string_length(v) != strlen(json_string_value(v)) ||
	    es_uuid_parse(json_string_value(v), out) < 0)
		return es_error_field(
			err, key,
			"must be a UUID like '123e4567-e89b-42d3-a456-426614174000'");
	return 1;
}

static int get_currency(const json_t *obj, char out[4], struct es_error *err)
{
	const char *s = NULL;
	int i;

	if (get_text(obj, "currency", "currency", true, 0, LONG_MAX, true, &s,
		     err) <= 0)
		return -1;
	for (i = 0; i < 3; i++)
		if (s[i] < 'A' || s[i] > 'Z')
			break;
	if (i < 3 || s[3] != '\0')
		return es_error_field(
			err, "currency",
			"must be a three-letter upper-case code like 'EUR'");
	memcpy(out, s, 4);
	return 1;
}

/* ES_ENOTFOUND for a path id that cannot name an account. */
static int account_id_from_path(const char *path_id, char out[37],
				struct es_error *err)
{
	char shown[ECHO_MAX + 8];

	if (es_uuid_parse(path_id, out) == 0)
		return 0;
	echo_copy(shown, sizeof(shown), path_id ? path_id : "");
	return es_error_set(err, ES_ENOTFOUND, "account '%s' does not exist",
			    shown);
}

int cmd_parse_open(const json_t *body, struct open_cmd *cmd,
		   struct es_error *err)
{
	static const char *const known[] = { "owner", "currency",
					     "overdraft_limit", "account_id",
					     NULL };
	int bad = 0, found;

	memset(cmd, 0, sizeof(*cmd));
	if (check_object(body, err) < 0)
		return -1;
	bad |= check_known(body, "", known, err) < 0;
	bad |= get_text(body, "owner", "owner", true, 1, ACCOUNT_OWNER_MAX,
			false, &cmd->owner, err) <= 0;
	bad |= get_currency(body, cmd->currency, err) < 0;
	bad |= get_int(body, "overdraft_limit", "overdraft_limit", false, 0,
		       ACCOUNT_AMOUNT_MAX, &cmd->overdraft_limit, err) < 0;
	found = get_uuid(body, "account_id", false, cmd->account_id, err);
	bad |= found < 0;
	if (bad)
		return -1;
	if (!found) {
		es_uuid_v4(cmd->account_id);
		cmd->generated = 1;
	}
	return 0;
}

int cmd_parse_money(const char *path_id, const json_t *body,
		    struct money_cmd *cmd, struct es_error *err)
{
	static const char *const known[] = { "amount", "reference",
					     "expected_version", NULL };
	int bad = 0;

	memset(cmd, 0, sizeof(*cmd));
	cmd->expected_version = -1;
	if (account_id_from_path(path_id, cmd->account_id, err) < 0 ||
	    check_object(body, err) < 0)
		return -1;
	bad |= check_known(body, "", known, err) < 0;
	bad |= get_int(body, "amount", "amount", true, 1, ACCOUNT_AMOUNT_MAX,
		       &cmd->amount, err) <= 0;
	bad |= get_text(body, "reference", "reference", false, 0,
			ACCOUNT_REFERENCE_MAX, true, &cmd->reference, err) < 0;
	bad |= get_int(body, "expected_version", "expected_version", false, 0,
		       LLONG_MAX, &cmd->expected_version, err) < 0;
	return bad ? -1 : 0;
}

int cmd_parse_transfer(const json_t *body, struct transfer_cmd *cmd,
		       struct es_error *err)
{
	static const char *const known[] = { "from",	    "to",
					     "amount",	    "reference",
					     "transfer_id", NULL };
	int bad = 0, from, to, found;

	memset(cmd, 0, sizeof(*cmd));
	if (check_object(body, err) < 0)
		return -1;
	bad |= check_known(body, "", known, err) < 0;
	from = get_uuid(body, "from", true, cmd->from, err);
	to = get_uuid(body, "to", true, cmd->to, err);
	bad |= from <= 0 || to <= 0;
	if (from > 0 && to > 0 && !strcmp(cmd->from, cmd->to))
		bad |= es_error_field(err, "to", "must differ from 'from'") < 0;
	bad |= get_int(body, "amount", "amount", true, 1, ACCOUNT_AMOUNT_MAX,
		       &cmd->amount, err) <= 0;
	bad |= get_text(body, "reference", "reference", false, 0,
			ACCOUNT_REFERENCE_MAX, true, &cmd->reference, err) < 0;
	found = get_uuid(body, "transfer_id", false, cmd->transfer_id, err);
	bad |= found < 0;
	if (bad)
		return -1;
	/*
	 * Time-ordered: its stream's row of the events' unique index on
	 * (stream_id, stream_version) goes near the last transfer's
	 */
	if (!found)
		es_uuid_v7_text(cmd->transfer_id);
	return 0;
}

int cmd_parse_close(const char *path_id, const json_t *body,
		    struct close_cmd *cmd, struct es_error *err)
{
	static const char *const known[] = { "expected_version", NULL };
	int bad = 0;

	memset(cmd, 0, sizeof(*cmd));
	cmd->expected_version = -1;
	if (account_id_from_path(path_id, cmd->account_id, err) < 0 ||
	    check_object(body, err) < 0)
		return -1;
	bad |= check_known(body, "", known, err) < 0;
	bad |= get_int(body, "expected_version", "expected_version", false, 0,
		       LLONG_MAX, &cmd->expected_version, err) < 0;
	return bad ? -1 : 0;
}

int cmd_parse_overdraft_limit(const char *path_id, const json_t *body,
			      struct overdraft_cmd *cmd, struct es_error *err)
{
	static const char *const known[] = { "overdraft_limit",
					     "expected_version", NULL };
	int bad = 0;

	memset(cmd, 0, sizeof(*cmd));
	cmd->expected_version = -1;
	if (account_id_from_path(path_id, cmd->account_id, err) < 0 ||
	    check_object(body, err) < 0)
		return -1;
	bad |= check_known(body, "", known, err) < 0;
	bad |= get_int(body, "overdraft_limit", "overdraft_limit", true, 0,
		       ACCOUNT_AMOUNT_MAX, &cmd->overdraft_limit, err) <= 0;
	bad |= get_int(body, "expected_version", "expected_version", false, 0,
		       LLONG_MAX, &cmd->expected_version, err) < 0;
	return bad ? -1 : 0;
}

int cmd_parse_if_match(const char *header, long long *version,
		       struct es_error *err)
{
	const char *p, *end;
	long long v = 0;
	size_t ndigits;

	*version = -1;
	if (!header)
		return 0;
	p = header;
	end = header + strlen(header);
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	/* "<digits>": no weak tags, no lists, no "*", no leading zeros */
	ndigits = end - p >= 2 ? (size_t)(end - p) - 2 : 0;
	if (ndigits < 1 || ndigits > 18 || p[0] != '"' || end[-1] != '"' ||
	    (ndigits > 1 && p[1] == '0'))
		goto malformed;
	for (p++; p < end - 1; p++) {
		if (*p < '0' || *p > '9')
			goto malformed;
		v = v * 10 + (*p - '0');
	}
	*version = v;
	return 0;
malformed:
	return es_error_set(
		err, ES_EMALFORMED,
		"If-Match must be one strong entity tag holding a version, like \"3\"");
}

/* Stream ids a raw append may write; field problems on "stream_id". */
static int check_stream_id(const char *s, struct es_error *err)
{
	size_t len = s ? strlen(s) : 0, i;

	if (len < 1 || len > ES_STREAM_ID_MAX)
		goto bad;
	for (i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '/')
			goto bad;
	if (!strncasecmp(s, ES_ACCOUNT_PREFIX, ES_ACCOUNT_PREFIX_LEN) ||
	    !strncasecmp(s, ES_TRANSFER_PREFIX, ES_TRANSFER_PREFIX_LEN))
		return es_error_field(
			err, "stream_id",
			"must not be in the 'account' or 'transfer' category, which only the account commands write");
	return 0;
bad:
	return es_error_field(
		err, "stream_id",
		"must be 1 to %d printable ASCII characters without spaces or '/'",
		ES_STREAM_ID_MAX);
}

static int get_expected(const json_t *body, long long *out,
			struct es_error *err)
{
	const json_t *v = json_object_get(body, "expected_version");
	const char *s;

	if (!v)
		return es_error_field(err, "expected_version", "is required");
	if (json_is_string(v)) {
		s = json_string_value(v);
		if (!strcmp(s, "any")) {
			*out = ES_ANY;
			return 0;
		}
		if (!strcmp(s, "no_stream")) {
			*out = ES_NO_STREAM;
			return 0;
		}
	} else if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = json_integer_value(v);
		return 0;
	}
	return es_error_field(
		err, "expected_version",
		"must be \"any\", \"no_stream\" or an integer >= 0");
}

/* One event of a raw append, `i` its index for the field names. */
static int check_event(const json_t *ev, size_t i, struct es_error *err)
{
	static const char *const known[] = { "type", "data", "metadata",
					     "event_id", NULL };
	char prefix[32], field[64], uuid[37];
	const json_t *v;
	const char *type;
	int bad = 0;

	snprintf(prefix, sizeof(prefix), "events[%zu]", i);
	if (!json_is_object(ev))
		return es_error_field(err, prefix, "must be an object, not %s",
				      kind(ev));
	snprintf(prefix, sizeof(prefix), "events[%zu].", i);
	bad |= check_known(ev, prefix, known, err) < 0;
	snprintf(field, sizeof(field), "%stype", prefix);
	bad |= get_text(ev, field, "type", true, 1, ES_EVENT_TYPE_MAX, false,
			&type, err) <= 0;
	snprintf(field, sizeof(field), "%sdata", prefix);
	v = json_object_get(ev, "data");
	if (!v)
		bad |= es_error_field(err, field, "is required") < 0;
	else if (!json_is_object(v))
		bad |= es_error_field(err, field, "must be an object, not %s",
				      kind(v)) < 0;
	snprintf(field, sizeof(field), "%smetadata", prefix);
	v = json_object_get(ev, "metadata");
	if (v && !json_is_object(v))
		bad |= es_error_field(err, field, "must be an object, not %s",
				      kind(v)) < 0;
	snprintf(field, sizeof(field), "%sevent_id", prefix);
	v = json_object_get(ev, "event_id");
	if (v && (!json_is_string(v) ||
		  json_string_length(v) != strlen(json_string_value(v)) ||
		  es_uuid_parse(json_string_value(v), uuid) < 0))
		bad |= es_error_field(err, field, "must be a UUID") < 0;
	return bad ? -1 : 0;
}

int cmd_parse_raw_append(const char *stream_id, const json_t *body,
			 struct raw_append_cmd *cmd, struct es_error *err)
{
	static const char *const known[] = { "expected_version", "events",
					     NULL };
	const json_t *events, *ev;
	int bad = 0;
	size_t i;

	memset(cmd, 0, sizeof(*cmd));
	cmd->expected = ES_ANY;
	if (check_object(body, err) < 0)
		return -1;
	bad |= check_stream_id(stream_id, err) < 0;
	bad |= check_known(body, "", known, err) < 0;
	bad |= get_expected(body, &cmd->expected, err) < 0;
	events = json_object_get(body, "events");
	if (!events) {
		bad |= es_error_field(err, "events", "is required") < 0;
	} else if (!json_is_array(events) || json_array_size(events) == 0) {
		bad |= es_error_field(err, "events",
				      "must be a non-empty array") < 0;
	} else if (json_array_size(events) > RAW_EVENTS_MAX) {
		bad |= es_error_field(err, "events",
				      "must hold at most %d events, not %zu",
				      RAW_EVENTS_MAX,
				      json_array_size(events)) < 0;
	} else {
		json_array_foreach(events, i, ev) bad |=
			check_event(ev, i, err) < 0;
	}
	if (bad)
		return -1;
	cmd->stream_id = stream_id;
	cmd->events = events;
	return 0;
}
