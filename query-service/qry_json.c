/*
 * qry_json.c - a fast path for the JSON that events carry, falling back
 * to jansson for everything else.
 *
 * jansson's parser reads its input one character at a time through a
 * stream callback and copies every token through a growable buffer; on
 * payloads like {"amount": 100, "currency": "EUR"} that costs more than
 * building the values. Here a value is parsed in place when it is made
 * only of what the fast path knows for certain to parse exactly as
 * jansson does; at the first byte outside that subset the whole text is
 * handed to json_loadb() instead, so every result, error or not, is
 * jansson's own.
 */
#include "qry_json.h"

#include <string.h>

/* deeper nesting goes to jansson (whose limit is 2048) */
#define DEPTH_MAX 32
/* integers of more digits go to jansson (it rejects overflow) */
#define DIGITS_MAX 18

struct in {
	const char *p, *end;
	int depth;
};

static void skip_ws(struct in *in)
{
	while (in->p < in->end && (*in->p == ' ' || *in->p == '\t' ||
				   *in->p == '\n' || *in->p == '\r'))
		in->p++;
}

/*
 * After a number or a literal: the end, whitespace or a delimiter. Any
 * other byte would make jansson's lexer read on (or fail).
 */
static int at_boundary(const struct in *in)
{
	char c;

	if (in->p == in->end)
		return 1;
	c = *in->p;
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' ||
	       c == '}' || c == ']';
}

/*
 * A string of printable ASCII without escapes, the opening quote at
 * in->p: its bytes into `*s` and `*len`, in->p past the closing quote.
 */
static int string_in(struct in *in, const char **s, size_t *len)
{
	const char *p = in->p + 1;

	*s = p;
	while (p < in->end && *p != '"') {
		unsigned char c = (unsigned char)*p;

		if (c < 0x20 || c > 0x7e || c == '\\')
			return -1;
		p++;
	}
	if (p == in->end)
		return -1;
	*len = (size_t)(p - *s);
	in->p = p + 1;
	return 0;
}

static json_t *value_in(struct in *in);

static json_t *integer_in(struct in *in)
{
	const char *p = in->p;
	int neg = 0, n = 0;
	long long v = 0;

	if (*p == '-') {
		neg = 1;
		p++;
	}
	if (p == in->end || *p < '0' || *p > '9')
		return NULL;
	/* a leading zero is an error (or a real) for jansson */
	if (*p == '0' && p + 1 < in->end && p[1] >= '0' && p[1] <= '9')
		return NULL;
	while (p < in->end && *p >= '0' && *p <= '9') {
		if (++n > DIGITS_MAX)
			return NULL;
		v = v * 10 + (*p - '0');
		p++;
	}
	in->p = p;
	/* '.', 'e' and 'E' make a real: jansson's */
	if (!at_boundary(in))
		return NULL;
	return json_integer(neg ? -v : v);
}

static json_t *literal_in(struct in *in, const char *word, size_t n,
			  json_t *value)
{
	if ((size_t)(in->end - in->p) < n || memcmp(in->p, word, n) != 0)
		return NULL;
	in->p += n;
	return at_boundary(in) ? value : NULL;
}

static json_t *object_in(struct in *in)
{
	json_t *obj = json_object(), *v;
	const char *key;
	size_t len;

	if (!obj)
		return NULL;
	in->p++;
	skip_ws(in);
	if (in->p < in->end && *in->p == '}') {
		in->p++;
		return obj;
	}
	for (;;) {
		if (in->p == in->end || *in->p != '"' ||
		    string_in(in, &key, &len) < 0)
			goto fail;
		skip_ws(in);
		if (in->p == in->end || *in->p != ':')
			goto fail;
		in->p++;
		skip_ws(in);
		v = value_in(in);
		/* a later duplicate replaces the value, as in jansson */
		if (!v || json_object_setn_new_nocheck(obj, key, len, v) < 0)
			goto fail;
		skip_ws(in);
		if (in->p == in->end)
			goto fail;
		if (*in->p == '}') {
			in->p++;
			return obj;
		}
		if (*in->p != ',')
			goto fail;
		in->p++;
		skip_ws(in);
	}
fail:
	json_decref(obj);
	return NULL;
}

static json_t *array_in(struct in *in)
{
	json_t *arr = json_array(), *v;

	if (!arr)
		return NULL;
	in->p++;
	skip_ws(in);
	if (in->p < in->end && *in->p == ']') {
		in->p++;
		return arr;
	}
	for (;;) {
		v = value_in(in);
		if (!v || json_array_append_new(arr, v) < 0)
			goto fail;
		skip_ws(in);
		if (in->p == in->end)
			goto fail;
		if (*in->p == ']') {
			in->p++;
			return arr;
		}
		if (*in->p != ',')
			goto fail;
		in->p++;
		skip_ws(in);
	}
fail:
	json_decref(arr);
	return NULL;
}

/* The value at in->p (no whitespace before it), or NULL: not ours. */
static json_t *value_in(struct in *in)
{
	const char *s;
	json_t *v = NULL;
	size_t len;

	if (in->p == in->end || ++in->depth > DEPTH_MAX)
		return NULL;
	switch (*in->p) {
	case '{':
		v = object_in(in);
		break;
	case '[':
		v = array_in(in);
		break;
	case '"':
		if (string_in(in, &s, &len) == 0)
			v = json_stringn_nocheck(s, len);
		break;
	case 't':
		v = literal_in(in, "true", 4, json_true());
		break;
	case 'f':
		v = literal_in(in, "false", 5, json_false());
		break;
	case 'n':
		v = literal_in(in, "null", 4, json_null());
		break;
	default:
		v = integer_in(in);
		break;
	}
	in->depth--;
	return v;
}

json_t *qry_json_load(const char *s, size_t len, json_error_t *jerr)
{
	struct in in = { s, s + len, 0 };
	json_t *v;

	skip_ws(&in);
	v = value_in(&in);
	if (v) {
		skip_ws(&in);
		if (in.p == in.end)
			return v;
		json_decref(v);
	}
	return json_loadb(s, len, JSON_DECODE_ANY, jerr);
}
