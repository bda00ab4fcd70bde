/* es_log.c - JSON log lines on stderr. */
#include "es_log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "es_array.h"

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

void es_log_write(enum es_log_level level, const char *event, const char *fmt,
		  ...)
{
	char ts[64], *line;
	struct timeval tv;
	struct tm tm;
	json_t *obj = NULL, *base;
	json_error_t jerr;
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		obj = json_vpack_ex(&jerr, 0, fmt, ap);
		va_end(ap);
	}
	if (!obj)
		obj = json_object();
	if (!obj)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
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
