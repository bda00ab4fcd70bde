/* es_log.h - one JSON line per request and per notable event, on stderr. */
#ifndef ES_LOG_H
#define ES_LOG_H

enum es_log_level {
	ES_LOG_DEBUG,
	ES_LOG_INFO,
	ES_LOG_WARN,
	ES_LOG_ERROR,
	ES_LOG_OFF
};

/* The process-wide threshold; messages below it cost one comparison. */
extern enum es_log_level es_log_threshold;

/* Set the threshold from "debug", "info", "warn", "error" or "off". */
int es_log_set_level(const char *name);

/* The service name stamped on every line ("command-service", ...). */
void es_log_set_service(const char *name);

/*
 * Write {"ts", "level", "service", "event", ...fields} as one line.
 * `fmt` is a json_pack() format for an object of extra fields, or NULL.
 */
void es_log_write(enum es_log_level level, const char *event, const char *fmt,
		  ...);

#define es_log(level, event, ...)                                    \
	do {                                                         \
		if ((level) >= es_log_threshold)                     \
			es_log_write((level), (event), __VA_ARGS__); \
	} while (0)

#endif
