/* es_config.h - settings from the environment, one table per service. */
#ifndef ES_CONFIG_H
#define ES_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "es_error.h"

enum es_config_type {
	ES_CONFIG_STR, /* dst is const char **, points into the environment */
	ES_CONFIG_INT, /* dst is long *, checked against [min, max] */
	ES_CONFIG_BOOL /* dst is int *, from true/false/1/0/yes/no/on/off */
};

struct es_config_var {
	const char *name;
	enum es_config_type type;
	void *dst;
	const char *def; /* NULL: required */
	long min, max;
	const char *help; /* one line for --help and the README */
};

/* Look a name up; getenv() in production, a fake in tests. */
typedef const char *(*es_config_lookup)(const char *name, void *data);

/*
 * Fill every variable's dst from `lookup`, or from its default.
 * A missing required variable or a bad value fails with ES_EINVALID and a
 * detail naming it: 'PORT' must be an integer in [1, 65535], got '70000'.
 * ownership: string values borrow what `lookup` returned.
 */
int es_config_load(const struct es_config_var *vars, size_t n,
		   es_config_lookup lookup, void *data, struct es_error *err);

/* The process environment, for es_config_load(). */
const char *es_config_getenv(const char *name, void *data);

/* Print the variables, defaults and help lines (for --help). */
void es_config_usage(FILE *out, const struct es_config_var *vars, size_t n);

/*
 * Command-line handling shared by the binaries: --help, --version and
 * --port N (which overrides PORT). Returns 1 when --help or --version was
 * answered (exit 0), 0 to go on, -1 on a usage error (message printed).
 * `*port` is set to the --port value, or left alone.
 */
int es_config_cli(int argc, char **argv, const char *prog, const char *summary,
		  const struct es_config_var *vars, size_t n, long *port);

#endif
