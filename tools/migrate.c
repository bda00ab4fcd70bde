/*
 * migrate.c - bin/migrate: apply pending migrations/NNNN_name.sql files in
 * name order, each once, each in its own transaction with its row in
 * schema_migrations, under an advisory lock so that several replicas may
 * start at the same moment. Refuses to run when an applied file was edited
 * or removed.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "es_config.h"
#include "es_db.h"
#include "es_log.h"
#include "es_migrate.h"

#define PROG "migrate"

struct migrate_config {
	const char *database_url;
	const char *migrations_dir;
	const char *log_level;
};

static int is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * The `migrations` directory beside the binary's directory (bin/../), or
 * ./migrations when there is none. Fills `buf`, returns it.
 */
static const char *default_dir(char *buf, size_t size)
{
	char exe[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n > 0) {
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			snprintf(buf, size, "%s/../migrations", exe);
			if (is_dir(buf)) {
				char real[PATH_MAX];

				if (realpath(buf, real))
					snprintf(buf, size, "%s", real);
				return buf;
			}
		}
	}
	snprintf(buf, size, "migrations");
	return buf;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 +
	       (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/*
 * Complain about every applied file that was edited or removed.
 * Returns how many there are.
 */
static int check_applied(const struct es_migration_list *list, const char *dir)
{
	int bad = 0;

	for (size_t i = 0; i < list->n; i++) {
		const struct es_migration *m = &list->items[i];

		switch (es_migration_state(m)) {
		case ES_MIGRATION_EDITED:
			fprintf(stderr,
				PROG
				": '%s' was edited after it was applied (checksum %s, applied with %s)\n",
				m->name, m->checksum ? m->checksum : "unknown",
				m->applied_checksum);
			bad++;
			break;
		case ES_MIGRATION_MISSING:
			fprintf(stderr,
				PROG
				": '%s' was applied at %s but is missing from '%s'\n",
				m->name, m->applied_at, dir);
			bad++;
			break;
		default:
			break;
		}
	}
	return bad;
}

/* --status: one line per migration; 1 when one is edited or missing. */
static int print_status(const struct es_migration_list *list)
{
	int bad = 0;

	for (size_t i = 0; i < list->n; i++) {
		const struct es_migration *m = &list->items[i];
		enum es_migration_state st = es_migration_state(m);

		if (st == ES_MIGRATION_PENDING)
			printf("pending %s\n", m->name);
		else
			printf("%s %s %s\n", es_migration_state_name(st),
			       m->name, m->applied_at);
		if (st == ES_MIGRATION_EDITED || st == ES_MIGRATION_MISSING)
			bad = 1;
	}
	return bad;
}

/* Apply what is pending; returns the number applied, or -1. */
static int apply_pending(PGconn *db, struct es_migration_list *list,
			 struct es_error *err)
{
	const char *last_applied = NULL;
	int applied = 0;

	for (size_t i = 0; i < list->n; i++)
		if (es_migration_state(&list->items[i]) != ES_MIGRATION_PENDING)
			last_applied = list->items[i].name;
	for (size_t i = 0; i < list->n; i++) {
		struct es_migration *m = &list->items[i];
		struct timespec t0;

		if (es_migration_state(m) != ES_MIGRATION_PENDING)
			continue;
		/* applied anyway: refusing would wedge every later deploy */
		if (last_applied && strcmp(m->name, last_applied) < 0)
			es_log(ES_LOG_WARN, "migration_out_of_order",
			       "{s:s, s:s}", "name", m->name,
			       "applied_after_it", last_applied);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (es_migrate_apply(db, m, err) < 0)
			return -1;
		es_log(ES_LOG_INFO, "migration_applied", "{s:s, s:s, s:I}",
		       "name", m->name, "checksum", m->checksum, "ms",
		       (json_int_t)ms_since(&t0));
		applied++;
	}
	return applied;
}

static int run(const struct migrate_config *cfg, int status_only)
{
	struct es_migration_list list = ES_MIGRATION_LIST_INIT;
	struct es_error err = ES_ERROR_INIT;
	PGconn *db = NULL;
	int ret = 1, applied = 0;

	if (es_migrate_scan_dir(&list, cfg->migrations_dir, &err) < 0)
		goto out;
	db = es_db_connect(cfg->database_url, "tandem-migrate", &err);
	if (!db)
		goto out;

	if (status_only) {
		if (es_migrate_load_applied(db, &list, &err) < 0 ||
		    es_migrate_checksums(db, &list, &err) < 0)
			goto out;
		ret = print_status(&list);
		if (check_applied(&list, cfg->migrations_dir))
			ret = 1;
		goto out;
	}

	if (es_migrate_lock(db, &err) < 0 ||
	    es_migrate_load_applied(db, &list, &err) < 0 ||
	    es_migrate_checksums(db, &list, &err) < 0)
		goto out;
	if (check_applied(&list, cfg->migrations_dir)) {
		es_log(ES_LOG_ERROR, "migrate_refused", "{s:s}", "reason",
		       "an applied migration was edited or removed");
		goto out;
	}
	applied = apply_pending(db, &list, &err);
	if (applied < 0)
		goto out;
	if (es_migrate_unlock(db, &err) < 0)
		goto out;
	es_log(ES_LOG_INFO, "migrate_done", "{s:i, s:I, s:s, s:s}", "applied",
	       applied, "total", (json_int_t)list.n, "latest",
	       list.n ? list.items[list.n - 1].name : "", "dir",
	       cfg->migrations_dir);
	ret = 0;
out:
	if (es_error_isset(&err))
		fprintf(stderr, PROG ": %s\n", err.detail);
	es_error_release(&err);
	PQfinish(db);
	es_migration_list_release(&list);
	return ret;
}

int main(int argc, char **argv)
{
	struct migrate_config cfg = { 0 };
	struct es_error err = ES_ERROR_INIT;
	char dir[PATH_MAX + 32];
	char **args;
	int nargs = 0, status_only = 0, cli;
	long port = 0;
	const struct es_config_var vars[] = {
		{ "DATABASE_URL", ES_CONFIG_STR, &cfg.database_url, NULL, 0, 0,
		  "libpq URI or conninfo of the database to migrate" },
		{ "MIGRATIONS_DIR", ES_CONFIG_STR, &cfg.migrations_dir,
		  default_dir(dir, sizeof(dir)), 0, 0,
		  "directory of the NNNN_name.sql files" },
		{ "LOG_LEVEL", ES_CONFIG_STR, &cfg.log_level, "info", 0, 0,
		  "debug, info, warn, error or off" },
	};
	const size_t nvars = sizeof(vars) / sizeof(*vars);

	/* --status is ours; the rest is the shared CLI */
	args = calloc((size_t)argc + 1, sizeof(*args));
	if (!args)
		return 1;
	for (int i = 0; i < argc; i++) {
		if (i > 0 && strcmp(argv[i], "--status") == 0)
			status_only = 1;
		else
			args[nargs++] = argv[i];
	}
	cli = es_config_cli(
		nargs, args, PROG,
		"Apply pending migrations (NNNN_name.sql, in name order, each once, each in one transaction) under an advisory lock.\n"
		"Refuses to run when an applied file was edited or removed.\n"
		"  --status   list each migration as applied or pending; change nothing",
		vars, nvars, &port);
	free(args);
	if (cli != 0)
		return cli > 0 ? 0 : 2;

	if (es_config_load(vars, nvars, es_config_getenv, NULL, &err) < 0) {
		fprintf(stderr, PROG ": %s\n", err.detail);
		es_error_release(&err);
		return 1;
	}
	if (es_log_set_level(cfg.log_level) < 0) {
		fprintf(stderr,
			PROG
			": 'LOG_LEVEL' must be one of debug, info, warn, error, off, got '%s'\n",
			cfg.log_level);
		return 1;
	}
	es_log_set_service(PROG);
	return run(&cfg, status_only);
}
