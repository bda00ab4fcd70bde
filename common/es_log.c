/* es_log.c - JSON log lines on stderr. */
#include "es_log.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "es_array.h"
#include "es_buf.h"
#include "es_utf8.h"

enum es_log_level es_log_threshold = ES_LOG_INFO;
static const char *service = "tandem";

static const char *const level_names[] = {
	[ES_LOG_DEBUG] = "debug", [ES_LOG_INFO] = "info",
	[ES_LOG_WARN] = "warn",	  [ES_LOG_ERROR] = "error",
	[ES_LOG_OFF] = "off",
};

int es_log_set_level(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
		if (strcmp(name, level_names[i]) == 0) {
			es_log_threshold = (enum es_log_level)i;
			return 0;
		}
	return -1;
}

void es_log_set_service(const char *name)
{
	service = name;
}

/* `n` as `width` decimal digits at `p` (zero-padded, cut to width). */
static char *digits(char *p, int n, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + n % 10);
		n /= 10;
	}
	return p + width;
}

/*
 * "YYYY-MM-DDTHH:MM:SS.mmmZ" of now into `ts` (digits written by hand:
 * snprintf() cost more than the rest of a line).
 */
static void timestamp(char ts[64])
{
	struct timeval tv;
	struct tm tm;
	char *p = ts;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	if (tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 0) {
		snprintf(ts, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int)(tv.tv_usec / 1000));
		return;
	}
	p = digits(p, tm.tm_year + 1900, 4);
	*p++ = '-';
	p = digits(p, tm.tm_mon + 1, 2);
	*p++ = '-';
	p = digits(p, tm.tm_mday, 2);
	*p++ = 'T';
	p = digits(p, tm.tm_hour, 2);
	*p++ = ':';
	p = digits(p, tm.tm_min, 2);
	*p++ = ':';
	p = digits(p, tm.tm_sec, 2);
	*p++ = '.';
	p = digits(p, (int)(tv.tv_usec / 1000), 3);
	*p++ = 'Z';
	*p = '\0';
}

/* ---- the direct writer ---- */

#define FAST_FIELDS 16

/* A string json_pack() would take: UTF-8 (else jansson's way decides). */
static bool add_str(struct es_buf *b, const char *s)
{
	size_t n;

	if (!s)
		return false;
	n = strlen(s);
	if (es_utf8_chars(s, n, NULL) < 0)
		return false;
	es_buf_add_jstr(b, s, n);
	return true;
}

/* A real as jansson writes it with JSON_REAL_PRECISION(6). */
static bool add_real(struct es_buf *b, double v)
{
	char buf[64], *start, *end;
	int n;

	if (!isfinite(v))
		return false;
	n = snprintf(buf, sizeof(buf), "%.6g", v);
	if (n < 0 || (size_t)n + 3 >= sizeof(buf))
		return false;
	if (!strchr(buf, '.') && !strchr(buf, 'e')) {
		buf[n++] = '.';
		buf[n++] = '0';
		buf[n] = '\0';
	}
	/* no '+' and no leading zeros in the exponent */
	start = strchr(buf, 'e');
	if (start) {
		start++;
		end = start + 1;
		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start) {
			memmove(start, end, strlen(end) + 1);
			n -= (int)(end - start);
		}
	}
	es_buf_add(b, buf, (size_t)n);
	return true;
}

/*
 * Append the fields of `fmt`, the json_pack() formats of our log calls
 * ("{s:s, s:s?, s:i, s:I, s:f, s:b, s:n}"), straight to `b` in their
 * order, as jansson would write them. False for anything else (other
 * format characters, a NULL or non-UTF-8 string, a key given twice or
 * one of the four of every line, a real that is not finite): the
 * caller then builds the line with jansson, which decides as it always
 * did. `ap` is consumed either way.
 */
static bool fast_fields(struct es_buf *b, const char *fmt, va_list ap)
{
	static const char *const own[] = { "ts", "level", "service", "event" };
	const char *keys[FAST_FIELDS];
	size_t nkeys = 0;
	const char *p = fmt;

	while (*p == ' ')
		p++;
	if (*p++ != '{')
		return false;
	for (;;) {
		const char *key;

		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '}')
			break;
		if (*p++ != 's' || nkeys == FAST_FIELDS)
			return false;
		key = va_arg(ap, const char *);
		if (!key)
			return false;
		for (size_t i = 0; i < ARRAY_SIZE(own); i++)
			if (strcmp(key, own[i]) == 0)
				return false;
		for (size_t i = 0; i < nkeys; i++)
			if (strcmp(key, keys[i]) == 0)
				return false;
		keys[nkeys++] = key;
		while (*p == ' ')
			p++;
		if (*p++ != ':')
			return false;
		while (*p == ' ')
			p++;
		es_buf_add(b, ",", 1);
		if (!add_str(b, key))
			return false;
		es_buf_add(b, ":", 1);
		switch (*p++) {
		case 's': {
			const char *v;

			if (*p == '#' || *p == '%')
				return false; /* a length: jansson's to read */
			v = va_arg(ap, const char *);

			if (*p == '?') {
				p++;
				if (!v) {
					es_buf_adds(b, "null");
					break;
				}
			}
			if (!add_str(b, v))
				return false;
			break;
		}
		case 'i':
			es_buf_add_int(b, va_arg(ap, int));
			break;
		case 'I':
			es_buf_add_int(b, (long long)va_arg(ap, json_int_t));
			break;
		case 'f':
			if (!add_real(b, va_arg(ap, double)))
				return false;
			break;
		case 'b':
			es_buf_adds(b, va_arg(ap, int) ? "true" : "false");
			break;
		case 'n':
			es_buf_adds(b, "null");
			break;
		default:
			return false;
		}
	}
	p++;
	while (*p == ' ')
		p++;
	return *p == '\0';
}

/* The four fields every line starts with, then `fmt`'s: one line. */
static bool fast_line(struct es_buf *b, enum es_log_level level,
		      const char *event, const char *fmt, va_list ap)
{
	char ts[64];

	timestamp(ts);
	es_buf_adds(b, "{\"ts\":");
	es_buf_add_jstr(b, ts, strlen(ts));
	es_buf_adds(b, ",\"level\":");
	es_buf_adds(b, "\"");
	es_buf_adds(b, level_names[level]);
	es_buf_adds(b, "\",\"service\":");
	if (!add_str(b, service))
		return false;
	es_buf_adds(b, ",\"event\":");
	if (!add_str(b, event))
		return false;
	if (fmt && !fast_fields(b, fmt, ap))
		return false;
	es_buf_adds(b, "}\n");
	return !b->failed;
}

void es_log_write(enum es_log_level level, const char *event, const char *fmt,
		  ...)
{
	char ts[64], *line;
	json_t *obj = NULL, *base;
	json_error_t jerr;
	struct es_buf b = ES_BUF_INIT;
	bool ok;
	va_list ap;

	/*
	 * One line per request at info: written directly (a tenth of what
	 * building it with jansson cost), the same bytes.
	 */
	va_start(ap, fmt);
	ok = es_buf_reserve(&b, 384) && fast_line(&b, level, event, fmt, ap);
	va_end(ap);
	if (ok) {
		/* one write per line: stdio locks the stream, lines never mix
		 */
		fwrite(b.s, 1, b.len, stderr);
		es_buf_release(&b);
		return;
	}
	es_buf_release(&b);
	if (fmt) {
		va_start(ap, fmt);
		obj = json_vpack_ex(&jerr, 0, fmt, ap);
		va_end(ap);
	}
	if (!obj)
		obj = json_object();
	if (!obj)
		return;
	timestamp(ts);
	base = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level",
			 level_names[level], "service", service, "event",
			 event);
	if (base)
		json_object_update(base, obj);
	json_decref(obj);
	if (!base)
		return;
	line = json_dumps(base, JSON_COMPACT | JSON_PRESERVE_ORDER |
					JSON_REAL_PRECISION(6));
	json_decref(base);
	if (!line)
		return;
	/* one fprintf per line: stdio locks the stream, lines never mix */
	fprintf(stderr, "%s\n", line);
	free(line);
}
