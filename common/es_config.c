/* es_config.c - settings from the environment. */
#include "es_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *es_config_getenv(const char *name, void *data)
{
	(void)data;
	return getenv(name);
}

static int parse_long(const char *s, long *out)
{
	char *end;
	long v;

	if (!*s || !(*s == '-' || (*s >= '0' && *s <= '9')))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

int es_config_load(const struct es_config_var *vars, size_t n,
		   es_config_lookup lookup, void *data, struct es_error *err)
{
	for (size_t i = 0; i < n; i++) {
		const struct es_config_var *v = &vars[i];
		const char *s = lookup(v->name, data);
		long l;

		if (!s || !*s)
			s = v->def;
		if (!s)
			return es_error_set(err, ES_EINVALID,
					    "'%s' is required", v->name);
		switch (v->type) {
		case ES_CONFIG_STR:
			*(const char **)v->dst = s;
			break;
		case ES_CONFIG_INT:
			if (parse_long(s, &l) < 0 || l < v->min || l > v->max)
				return es_error_set(
					err, ES_EINVALID,
					"'%s' must be an integer in [%ld, %ld], got '%.80s'",
					v->name, v->min, v->max, s);
			*(long *)v->dst = l;
			break;
		case ES_CONFIG_BOOL:
			if (parse_bool(s, (int *)v->dst) < 0)
				return es_error_set(
					err, ES_EINVALID,
					"'%s' must be true or false, got '%.80s'",
					v->name, s);
			break;
		}
	}
	return 0;
}

void es_config_usage(FILE *out, const struct es_config_var *vars, size_t n)
{
	fprintf(out, "Environment:\n");
	for (size_t i = 0; i < n; i++)
		fprintf(out, "  %-24s %s (%s%s)\n", vars[i].name, vars[i].help,
			vars[i].def ? "default: " : "required",
			vars[i].def ? (*vars[i].def ? vars[i].def : "empty")
				    : "");
}

int es_config_cli(int argc, char **argv, const char *prog, const char *summary,
		  const struct es_config_var *vars, size_t n, long *port)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			printf("Usage: %s [--port N] [--help] [--version]\n%s\n\n",
			       prog, summary);
			es_config_usage(stdout, vars, n);
			return 1;
		}
		if (strcmp(a, "--version") == 0) {
			printf("%s %s\n", prog, TANDEM_VERSION);
			return 1;
		}
		if (strcmp(a, "--port") == 0 || strncmp(a, "--port=", 7) == 0) {
			const char *v = a[6] == '='    ? a + 7
					: i + 1 < argc ? argv[++i]
						       : "";
			long p;

			if (parse_long(v, &p) < 0 || p < 1 || p > 65535) {
				fprintf(stderr,
					"%s: '--port' must be an integer in [1, 65535], got '%s'\n",
					prog, v);
				return -1;
			}
			*port = p;
			continue;
		}
		fprintf(stderr, "%s: unknown argument '%s' (try --help)\n",
			prog, a);
		return -1;
	}
	return 0;
}
