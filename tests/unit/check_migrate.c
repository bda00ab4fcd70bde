/* check_migrate.c - migration names, order, states and directory scans. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "es_log.h"
#include "es_migrate.h"

START_TEST(valid_names_are_accepted)
{
	ck_assert(es_migrate_name_valid("0001_events.sql"));
	ck_assert(es_migrate_name_valid("0002_append_function.sql"));
	ck_assert(es_migrate_name_valid("9999_a.sql"));
	ck_assert(es_migrate_name_valid("0010_v2_views_0.sql"));
	ck_assert(es_migrate_name_valid("0003__.sql"));
}
END_TEST

START_TEST(invalid_names_are_refused)
{
	static const char *const bad[] = {
		"",
		".sql",
		"0001_.sql",
		"001_events.sql",
		"00001_events.sql",
		"0001-events.sql",
		"0001events.sql",
		"0001_Events.sql",
		"0001_events.SQL",
		"0001_events.sql~",
		"0001_events.sql.bak",
		"0001_events",
		"0001_ev-ents.sql",
		"0001_ev ents.sql",
		"0001_évents.sql",
		"abcd_events.sql",
		"README.md",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		ck_assert_msg(!es_migrate_name_valid(bad[i]), "accepted '%s'",
			      bad[i]);
}
END_TEST

START_TEST(list_keeps_name_order_and_unique_names)
{
	struct es_migration_list list = ES_MIGRATION_LIST_INIT;
	char name[32];
	struct es_migration *m;

	/* 40 names in a scrambled order, some twice: grows past 16 */
	for (int i = 0; i < 80; i++) {
		snprintf(name, sizeof(name), "%04d_m.sql", (i * 37) % 40);
		ck_assert_ptr_nonnull(es_migration_list_get(&list, name));
	}
	ck_assert_uint_eq(list.n, 40);
	for (size_t i = 0; i < list.n; i++) {
		snprintf(name, sizeof(name), "%04zu_m.sql", i);
		ck_assert_str_eq(list.items[i].name, name);
	}
	m = es_migration_list_get(&list, "0007_m.sql");
	ck_assert_ptr_eq(m, &list.items[7]);
	ck_assert_uint_eq(list.n, 40);
	es_migration_list_release(&list);
	ck_assert_uint_eq(list.n, 0);
	ck_assert_ptr_null(list.items);
}
END_TEST

START_TEST(order_is_byte_order_not_numeric_parse)
{
	struct es_migration_list list = ES_MIGRATION_LIST_INIT;

	es_migration_list_get(&list, "0010_b.sql");
	es_migration_list_get(&list, "0002_z.sql");
	es_migration_list_get(&list, "0002_a.sql");
	es_migration_list_get(&list, "0002_a_b.sql");
	ck_assert_str_eq(list.items[0].name, "0002_a.sql");
	/* '.' (0x2e) sorts before '_' (0x5f) */
	ck_assert_str_eq(list.items[1].name, "0002_a_b.sql");
	ck_assert_str_eq(list.items[2].name, "0002_z.sql");
	ck_assert_str_eq(list.items[3].name, "0010_b.sql");
	es_migration_list_release(&list);
}
END_TEST

static struct es_migration *with_file(struct es_migration_list *list,
				      const char *name, const char *sum)
{
	struct es_migration *m = es_migration_list_get(list, name);

	ck_assert_ptr_nonnull(m);
	m->sql = strdup("select 1;");
	m->len = strlen(m->sql);
	m->checksum = strdup(sum);
	return m;
}

START_TEST(states_follow_files_and_recorded_checksums)
{
	struct es_migration_list list = ES_MIGRATION_LIST_INIT;
	struct es_error err = ES_ERROR_INIT;

	with_file(&list, "0001_a.sql", "aa");
	with_file(&list, "0002_b.sql", "bb");
	with_file(&list, "0004_d.sql", "dd");
	ck_assert_int_eq(es_migrate_mark_applied(&list, "0001_a.sql", "aa",
						 "2024-01-01T00:00:00.000Z",
						 &err),
			 0);
	ck_assert_int_eq(es_migrate_mark_applied(&list, "0002_b.sql", "b0",
						 "2024-01-01T00:00:01.000Z",
						 &err),
			 0);
	ck_assert_int_eq(es_migrate_mark_applied(&list, "0003_c.sql", "cc",
						 "2024-01-01T00:00:02.000Z",
						 &err),
			 0);
	ck_assert_uint_eq(list.n, 4);
	ck_assert_int_eq(es_migration_state(&list.items[0]),
			 ES_MIGRATION_APPLIED);
	ck_assert_int_eq(es_migration_state(&list.items[1]),
			 ES_MIGRATION_EDITED);
	ck_assert_str_eq(list.items[2].name, "0003_c.sql");
	ck_assert_int_eq(es_migration_state(&list.items[2]),
			 ES_MIGRATION_MISSING);
	ck_assert_int_eq(es_migration_state(&list.items[3]),
			 ES_MIGRATION_PENDING);
	ck_assert_str_eq(list.items[2].applied_at, "2024-01-01T00:00:02.000Z");
	ck_assert_str_eq(es_migration_state_name(ES_MIGRATION_EDITED),
			 "edited");
	ck_assert(!es_error_isset(&err));
	es_migration_list_release(&list);
}
END_TEST

START_TEST(applied_file_without_checksum_counts_as_edited)
{
	struct es_migration_list list = ES_MIGRATION_LIST_INIT;
	struct es_migration *m = es_migration_list_get(&list, "0001_a.sql");

	m->sql = strdup("");
	ck_assert_int_eq(
		es_migrate_mark_applied(&list, "0001_a.sql", "aa", "now", NULL),
		0);
	ck_assert_int_eq(es_migration_state(&list.items[0]),
			 ES_MIGRATION_EDITED);
	es_migration_list_release(&list);
}
END_TEST

static char tmpdir[64];

static void write_file(const char *name, const char *body, size_t len)
{
	char path[160];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(body, 1, len, f), len);
	fclose(f);
}

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_migrate.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(scan_reads_valid_files_in_order_and_skips_the_rest)
{
	struct es_migration_list list = ES_MIGRATION_LIST_INIT;
	struct es_error err = ES_ERROR_INIT;
	char sub[128];

	make_tmpdir();
	write_file("0002_second.sql", "create table b();\n", 18);
	write_file("0001_first.sql", "create table a();\n", 18);
	write_file("0003_empty.sql", "", 0);
	write_file("README.md", "not sql", 7);
	write_file("0004_Bad.sql", "select 1;", 9);
	write_file(".0005_hidden.sql", "select 1;", 9);
	write_file("0006_backup.sql.orig", "select 1;", 9);
	snprintf(sub, sizeof(sub), "%s/0007_dir.sql", tmpdir);
	ck_assert_int_eq(mkdir(sub, 0700), 0);

	ck_assert_int_eq(es_migrate_scan_dir(&list, tmpdir, &err), 0);
	ck_assert_uint_eq(list.n, 3);
	ck_assert_str_eq(list.items[0].name, "0001_first.sql");
	ck_assert_str_eq(list.items[0].sql, "create table a();\n");
	ck_assert_uint_eq(list.items[0].len, 18);
	ck_assert_str_eq(list.items[1].name, "0002_second.sql");
	ck_assert_str_eq(list.items[2].name, "0003_empty.sql");
	ck_assert_str_eq(list.items[2].sql, "");
	ck_assert_uint_eq(list.items[2].len, 0);
	ck_assert_int_eq(es_migration_state(&list.items[0]),
			 ES_MIGRATION_PENDING);
	es_migration_list_release(&list);
	remove_tmpdir();
}
END_TEST

START_TEST(scan_reads_files_larger_than_one_buffer)
{
	struct es_migration_list list = ES_MIGRATION_LIST_INIT;
	struct es_error err = ES_ERROR_INIT;
	size_t len = 100000;
	char *body = malloc(len);

	for (size_t i = 0; i < len; i++)
		body[i] = (char)('a' + i % 26);
	make_tmpdir();
	write_file("0001_big.sql", body, len);
	ck_assert_int_eq(es_migrate_scan_dir(&list, tmpdir, &err), 0);
	ck_assert_uint_eq(list.n, 1);
	ck_assert_uint_eq(list.items[0].len, len);
	ck_assert_int_eq(memcmp(list.items[0].sql, body, len), 0);
	ck_assert_int_eq(list.items[0].sql[len], '\0');
	free(body);
	es_migration_list_release(&list);
	remove_tmpdir();
}
END_TEST

START_TEST(scan_refuses_a_nul_byte)
{
	struct es_migration_list list = ES_MIGRATION_LIST_INIT;
	struct es_error err = ES_ERROR_INIT;

	make_tmpdir();
	write_file("0001_nul.sql", "select 1;\0drop table x;", 23);
	ck_assert_int_eq(es_migrate_scan_dir(&list, tmpdir, &err), -1);
	ck_assert_int_eq(err.code, ES_EINTERNAL);
	ck_assert_ptr_nonnull(strstr(err.detail, "0001_nul.sql"));
	ck_assert_ptr_nonnull(strstr(err.detail, "NUL"));
	es_error_release(&err);
	es_migration_list_release(&list);
	remove_tmpdir();
}
END_TEST

START_TEST(scan_of_a_missing_directory_names_it)
{
	struct es_migration_list list = ES_MIGRATION_LIST_INIT;
	struct es_error err = ES_ERROR_INIT;

	ck_assert_int_eq(
		es_migrate_scan_dir(&list, "/nonexistent/migrations", &err),
		-1);
	ck_assert_ptr_nonnull(strstr(err.detail, "'/nonexistent/migrations'"));
	ck_assert_uint_eq(list.n, 0);
	es_error_release(&err);
}
END_TEST

static Suite *migrate_suite(void)
{
	Suite *s = suite_create("migrate");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, valid_names_are_accepted);
	tcase_add_test(tc, invalid_names_are_refused);
	tcase_add_test(tc, list_keeps_name_order_and_unique_names);
	tcase_add_test(tc, order_is_byte_order_not_numeric_parse);
	tcase_add_test(tc, states_follow_files_and_recorded_checksums);
	tcase_add_test(tc, applied_file_without_checksum_counts_as_edited);
	tcase_add_test(tc, scan_reads_valid_files_in_order_and_skips_the_rest);
	tcase_add_test(tc, scan_reads_files_larger_than_one_buffer);
	tcase_add_test(tc, scan_refuses_a_nul_byte);
	tcase_add_test(tc, scan_of_a_missing_directory_names_it);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(migrate_suite());
	int failed;

	es_log_threshold = ES_LOG_OFF;
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
