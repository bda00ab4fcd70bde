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

#include <stdint.h>
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
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/*
	 * Eight bytes at a time while none is a quote, a backslash, a
	 * control byte, DEL or above (the test flags each such byte, maybe
	 * more: the byte loop below then decides).
	 */
	while (in->end - p >= 8) {
		const uint64_t ones = 0x0101010101010101ULL,
			       highs = 0x8080808080808080ULL;
		uint64_t w, q, b;

		memcpy(&w, p, 8);
		q = w ^ (ones * '"');
		b = w ^ (ones * '\\');
		/* '"', '\\', below 0x20, 0x7f and up (w + 1 carries there) */
		if ((((q - ones) & ~q) | ((b - ones) & ~b) |
		     ((w - ones * 0x20) & ~w) | (w + ones) | w) &
		    highs)
			break;
		p += 8;
	}
#endif
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

/*
 * An integer as jansson takes it into *out; -1 for anything else (a
 * leading zero, more than DIGITS_MAX digits, a real).
 */
static int integer_scan(struct in *in, long long *out)
{
	const char *p = in->p;
	int neg = 0, n = 0;
	long long v = 0;

	if (*p == '-') {
		neg = 1;
		p++;
	}
	if (p == in->end || *p < '0' || *p > '9')
		return -1;
	/* a leading zero is an error (or a real) for jansson */
	if (*p == '0' && p + 1 < in->end && p[1] >= '0' && p[1] <= '9')
		return -1;
	while (p < in->end && *p >= '0' && *p <= '9') {
		if (++n > DIGITS_MAX)
			return -1;
		v = v * 10 + (*p - '0');
		p++;
	}
	in->p = p;
	/* '.', 'e' and 'E' make a real: jansson's */
	if (!at_boundary(in))
		return -1;
	*out = neg ? -v : v;
	return 0;
}

static json_t *integer_in(struct in *in)
{
	long long v;

	return integer_scan(in, &v) < 0 ? NULL : json_integer(v);
}

/* The literal `word` (n bytes) standing alone; -1 if not. */
static int literal_scan(struct in *in, const char *word, size_t n)
{
	if ((size_t)(in->end - in->p) < n || memcmp(in->p, word, n) != 0)
		return -1;
	in->p += n;
	return at_boundary(in) ? 0 : -1;
}

static json_t *literal_in(struct in *in, const char *word, size_t n,
			  json_t *value)
{
	return literal_scan(in, word, n) < 0 ? NULL : value;
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

/* ---- flat objects ---- */

/* A member while parsing: spans of the source text. */
struct flat_span {
	enum qry_flat_type type;
	const char *key, *str;
	size_t key_len, str_len;
	long long i;
};

/* The scalar at in->p into `m`, as value_in() would take it; else -1. */
static int flat_value(struct in *in, struct flat_span *m)
{
	if (in->p == in->end)
		return -1;
	switch (*in->p) {
	case '"':
		m->type = QRY_FLAT_STR;
		return string_in(in, &m->str, &m->str_len);
	case 't':
		m->type = QRY_FLAT_TRUE;
		return literal_scan(in, "true", 4);
	case 'f':
		m->type = QRY_FLAT_FALSE;
		return literal_scan(in, "false", 5);
	case 'n':
		m->type = QRY_FLAT_NULL;
		return literal_scan(in, "null", 4);
	case '{':
	case '[':
		return -1; /* not flat */
	default:
		m->type = QRY_FLAT_INT;
		return integer_scan(in, &m->i);
	}
}

/* The members of the object `s`, as object_in() reads them: n, or -1. */
static int flat_parse(const char *s, size_t len,
		      struct flat_span m[QRY_FLAT_MAX])
{
	struct in in = { s, s + len, 0 };
	int n = 0;

	skip_ws(&in);
	if (in.p == in.end || *in.p != '{')
		return -1;
	in.p++;
	skip_ws(&in);
	if (in.p < in.end && *in.p == '}') {
		in.p++;
		goto end;
	}
	for (;;) {
		if (n == QRY_FLAT_MAX || in.p == in.end || *in.p != '"' ||
		    string_in(&in, &m[n].key, &m[n].key_len) < 0)
			return -1;
		skip_ws(&in);
		if (in.p == in.end || *in.p != ':')
			return -1;
		in.p++;
		skip_ws(&in);
		if (flat_value(&in, &m[n]) < 0)
			return -1;
		n++;
		skip_ws(&in);
		if (in.p == in.end)
			return -1;
		if (*in.p == '}') {
			in.p++;
			break;
		}
		if (*in.p != ',')
			return -1;
		in.p++;
		skip_ws(&in);
	}
end:
	skip_ws(&in);
	return in.p == in.end ? n : -1;
}

struct qry_flat *qry_json_flat(const char *s, size_t len,
			       void *(*alloc)(size_t))
{
	struct flat_span m[QRY_FLAT_MAX];
	struct qry_flat *f;
	size_t text = 0, at = 0;
	char *t;
	int n, k;

	n = flat_parse(s, len, m);
	if (n < 0)
		return NULL;
	for (k = 0; k < n; k++)
		text += m[k].key_len + 1 +
			(m[k].type == QRY_FLAT_STR ? m[k].str_len + 1 : 0);
	f = alloc(sizeof(*f) + (size_t)n * sizeof(f->m[0]) + text);
	if (!f)
		return NULL;
	f->size = sizeof(*f) + (size_t)n * sizeof(f->m[0]) + text;
	f->n = (size_t)n;
	t = (char *)&f->m[n];
	for (k = 0; k < n; k++) {
		struct qry_flat_member *o = &f->m[k];

		memset(o, 0, sizeof(*o));
		o->type = m[k].type;
		o->i = m[k].type == QRY_FLAT_INT ? m[k].i : 0;
		o->key = at;
		o->key_len = m[k].key_len;
		memcpy(t + at, m[k].key, m[k].key_len);
		t[at + m[k].key_len] = '\0';
		at += m[k].key_len + 1;
		if (m[k].type == QRY_FLAT_STR) {
			o->str = at;
			o->str_len = m[k].str_len;
			memcpy(t + at, m[k].str, m[k].str_len);
			t[at + m[k].str_len] = '\0';
			at += m[k].str_len + 1;
		}
	}
	return f;
}

const char *qry_flat_text(const struct qry_flat *f, size_t off)
{
	return (const char *)&f->m[f->n] + off;
}

const struct qry_flat_member *qry_flat_get(const struct qry_flat *f,
					   const char *key)
{
	size_t n = strlen(key), k;

	/* from the end: a later duplicate is the one jansson keeps */
	for (k = f->n; k > 0; k--) {
		const struct qry_flat_member *m = &f->m[k - 1];

		if (m->key_len == n &&
		    memcmp(qry_flat_text(f, m->key), key, n) == 0)
			return m;
	}
	return NULL;
}
