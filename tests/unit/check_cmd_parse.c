/*
 * check_cmd_parse.c - command bodies: parsing and validation.
 *
 * Most cases are data, one directory per case as in jansson's
 * test/suites: tests/data/commands/<command>/<case>/ holds `input` (the
 * body, bytes as sent), `error` (first line "ok", or the status 400, 404
 * or 422, then for 422 the fields listed in `errors`, one per line) and,
 * optionally, `path_id` (the {id} or {stream_id} of the path). Each case
 * runs as the route does: es_json_parse_object(), then cmd_parse_*().
 * tests/integration/t0320-bad-inputs.sh sends the same cases over HTTP.
 */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../command-service/cmd_parse.h"
#include "es_array.h"
#include "es_json.h"
#include "es_store.h"
#include "es_uuid.h"

#define A_ID "11111111-1111-4111-8111-111111111111"
#define B_ID "22222222-2222-4222-8222-222222222222"

/* The path ids of cases without a `path_id` file. */
#define DEFAULT_ACCOUNT A_ID
#define DEFAULT_STREAM	"orders-1"

#define MAX_CASES 1024

struct data_case {
	char command[32];
	char name[128];
	char dir[1024];
	char *input;
	size_t input_len;
	char *path_id; /* NULL: the default */
	char status[8]; /* "ok", "400", "404", "422" */
	char *fields[32]; /* for 422, sorted */
	size_t nfields;
};

static struct data_case cases[MAX_CASES];
static size_t ncases;
static char data_dir[1024];
static char load_problem[1200];

/* ----- loading the data ------------------------------------------------ */

/* The whole file, NUL-terminated; NULL if it cannot be read. */
static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, alloc = 0, got;

	if (!f)
		return NULL;
	do {
		if (alloc - n < 4096) {
			char *nb = realloc(buf, alloc + 65536);

			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
			alloc += 65536;
		}
		got = fread(buf + n, 1, alloc - n - 1, f);
		n += got;
	} while (got > 0);
	fclose(f);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

static void chomp(char *s)
{
	size_t n = strlen(s);

	if (n > 0 && s[n - 1] == '\n')
		s[n - 1] = '\0';
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read one case directory; a problem goes to load_problem. */
static int load_case(const char *command, const char *name)
{
	struct data_case *c;
	char path[1200], *error, *line, *save = NULL;

	if (ncases == MAX_CASES) {
		snprintf(load_problem, sizeof(load_problem),
			 "more than %d cases", MAX_CASES);
		return -1;
	}
	c = &cases[ncases];
	if (snprintf(c->command, sizeof(c->command), "%s", command) >=
		    (int)sizeof(c->command) ||
	    snprintf(c->name, sizeof(c->name), "%s", name) >=
		    (int)sizeof(c->name) ||
	    snprintf(c->dir, sizeof(c->dir), "%s/%s/%s", data_dir, command,
		     name) >= (int)sizeof(c->dir)) {
		snprintf(load_problem, sizeof(load_problem),
			 "case name too long: %s/%s", command, name);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/input", c->dir);
	c->input = slurp(path, &c->input_len);
	snprintf(path, sizeof(path), "%s/error", c->dir);
	error = slurp(path, NULL);
	if (!c->input || !error) {
		snprintf(load_problem, sizeof(load_problem),
			 "%s: cannot read input and error", c->dir);
		free(error);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/path_id", c->dir);
	c->path_id = slurp(path, NULL);
	if (c->path_id)
		chomp(c->path_id);
	line = strtok_r(error, "\n", &save);
	snprintf(c->status, sizeof(c->status), "%s", line ? line : "");
	while ((line = strtok_r(NULL, "\n", &save)) && c->nfields < 32)
		c->fields[c->nfields++] = strdup(line);
	free(error);
	qsort(c->fields, c->nfields, sizeof(c->fields[0]), cmp_str);
	if (strcmp(c->status, "ok") && strcmp(c->status, "400") &&
	    strcmp(c->status, "404") && strcmp(c->status, "422")) {
		snprintf(load_problem, sizeof(load_problem),
			 "%s/error: first line must be ok, 400, 404 or 422",
			 c->dir);
		return -1;
	}
	ncases++;
	return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int visible(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

static void load_cases(void)
{
	const char *root = getenv("TANDEM_ROOT");
	struct dirent **cmds = NULL, **names = NULL;
	int ncmds, nnames, i, j;
	char dir[1100];

	snprintf(data_dir, sizeof(data_dir), "%s/tests/data/commands",
		 root && *root ? root : ".");
	ncmds = scandir(data_dir, &cmds, visible, by_name);
	if (ncmds < 0) {
		snprintf(load_problem, sizeof(load_problem),
			 "cannot read the data directory '%s' (set TANDEM_ROOT "
			 "to the repository root)",
			 data_dir);
		return;
	}
	for (i = 0; i < ncmds; i++) {
		names = NULL;
		if (snprintf(dir, sizeof(dir), "%s/%s", data_dir,
			     cmds[i]->d_name) >= (int)sizeof(dir))
			nnames = -1;
		else
			nnames = scandir(dir, &names, visible, by_name);
		if (nnames < 0 && !load_problem[0])
			snprintf(load_problem, sizeof(load_problem),
				 "cannot read '%s'", dir);
		for (j = 0; j < nnames; j++) {
			if (!load_problem[0])
				load_case(cmds[i]->d_name, names[j]->d_name);
			free(names[j]);
		}
		free(names);
		free(cmds[i]);
	}
	free(cmds);
	if (!ncases && !load_problem[0])
		snprintf(load_problem, sizeof(load_problem),
			 "no cases under '%s'", data_dir);
}

static void free_cases(void)
{
	size_t i, j;

	for (i = 0; i < ncases; i++) {
		free(cases[i].input);
		free(cases[i].path_id);
		for (j = 0; j < cases[i].nfields; j++)
			free(cases[i].fields[j]);
	}
}

/* ----- running a case -------------------------------------------------- */

static int is_lower_uuid(const char *s)
{
	char norm[37];

	return es_uuid_parse(s, norm) == 0 && !strcmp(norm, s);
}

/* Parse the body as the route would; 0 or -1 with `err` set. */
static int run_case(const struct data_case *c, struct es_error *err)
{
	json_t *body = es_json_parse_object(c->input, c->input_len, err);
	const char *path_id = c->path_id;
	int ret = -1;

	if (!body)
		return -1;
	if (!strcmp(c->command, "open")) {
		struct open_cmd cmd;

		ret = cmd_parse_open(body, &cmd, err);
		if (ret == 0) {
			ck_assert_msg(is_lower_uuid(cmd.account_id),
				      "%s: account_id '%s'", c->dir,
				      cmd.account_id);
			/* an id of our own making exactly when none was given
			 */
			ck_assert_int_eq(cmd.generated,
					 !json_object_get(body, "account_id") ||
						 json_is_null(json_object_get(
							 body, "account_id")));
			ck_assert_ptr_nonnull(cmd.owner);
			ck_assert_int_eq(strlen(cmd.currency), 3);
			ck_assert_int_ge(cmd.overdraft_limit, 0);
		}
	} else if (!strcmp(c->command, "deposit") ||
		   !strcmp(c->command, "withdraw")) {
		struct money_cmd cmd;

		ret = cmd_parse_money(path_id ? path_id : DEFAULT_ACCOUNT, body,
				      &cmd, err);
		if (ret == 0) {
			ck_assert_int_gt(cmd.amount, 0);
			ck_assert_int_le(cmd.amount, ACCOUNT_AMOUNT_MAX);
			ck_assert(is_lower_uuid(cmd.account_id));
		}
	} else if (!strcmp(c->command, "transfer")) {
		struct transfer_cmd cmd;

		ret = cmd_parse_transfer(body, &cmd, err);
		if (ret == 0) {
			ck_assert(is_lower_uuid(cmd.transfer_id));
			ck_assert(is_lower_uuid(cmd.from));
			ck_assert(is_lower_uuid(cmd.to));
			ck_assert_str_ne(cmd.from, cmd.to);
		}
	} else if (!strcmp(c->command, "close")) {
		struct close_cmd cmd;

		ret = cmd_parse_close(path_id ? path_id : DEFAULT_ACCOUNT, body,
				      &cmd, err);
	} else if (!strcmp(c->command, "overdraft-limit")) {
		struct overdraft_cmd cmd;

		ret = cmd_parse_overdraft_limit(
			path_id ? path_id : DEFAULT_ACCOUNT, body, &cmd, err);
		if (ret == 0) {
			ck_assert_int_ge(cmd.overdraft_limit, 0);
			ck_assert_int_le(cmd.overdraft_limit,
					 ACCOUNT_AMOUNT_MAX);
			ck_assert(is_lower_uuid(cmd.account_id));
		}
	} else if (!strcmp(c->command, "append")) {
		struct raw_append_cmd cmd;

		ret = cmd_parse_raw_append(path_id ? path_id : DEFAULT_STREAM,
					   body, &cmd, err);
		if (ret == 0)
			ck_assert_ptr_eq(cmd.events,
					 json_object_get(body, "events"));
	} else {
		ck_abort_msg("%s: unknown command '%s'", c->dir, c->command);
	}
	json_decref(body);
	return ret;
}

/* Messages read like git's: lower case first, no full stop. */
static void assert_message_style(const struct data_case *c, const char *msg)
{
	size_t n = strlen(msg);

	ck_assert_msg(n > 0, "%s: empty message", c->dir);
	ck_assert_msg(!(msg[0] >= 'A' && msg[0] <= 'Z') ||
			      !strncmp(msg, "If-Match", 8),
		      "%s: message '%s' starts with a capital", c->dir, msg);
	ck_assert_msg(msg[n - 1] != '.', "%s: message '%s' ends with '.'",
		      c->dir, msg);
}

START_TEST(data_case)
{
	const struct data_case *c = &cases[_i];
	struct es_error err = ES_ERROR_INIT;
	char *fields[64], *problem_text;
	size_t nfields = 0, i;
	json_t *problem, *e;
	int ret = run_case(c, &err);

	if (!strcmp(c->status, "ok")) {
		ck_assert_msg(ret == 0 && err.code == ES_OK,
			      "%s: refused (%u %s)", c->dir,
			      es_error_status(err.code), err.detail);
		return;
	}
	ck_assert_msg(ret == -1, "%s: accepted, expected %s", c->dir,
		      c->status);
	ck_assert_msg(es_error_status(err.code) == (unsigned)atoi(c->status),
		      "%s: status %u (%s), expected %s", c->dir,
		      es_error_status(err.code), err.detail, c->status);
	assert_message_style(c, err.detail);
	/* the problem must build: valid UTF-8 everywhere */
	problem = es_error_problem(&err);
	ck_assert_msg(problem != NULL, "%s: no problem body", c->dir);
	problem_text = json_dumps(problem, 0);
	ck_assert_msg(problem_text != NULL, "%s: problem does not encode",
		      c->dir);
	free(problem_text);
	json_decref(problem);
	if (err.code != ES_EINVALID) {
		ck_assert_msg(err.fields == NULL, "%s: fields without a 422",
			      c->dir);
		es_error_release(&err);
		return;
	}
	json_array_foreach(err.fields, i, e)
	{
		const char *f = json_string_value(json_object_get(e, "field"));
		const char *m =
			json_string_value(json_object_get(e, "message"));

		ck_assert_msg(f && m, "%s: problem %zu lacks field or message",
			      c->dir, i);
		assert_message_style(c, m);
		ck_assert(nfields < 64);
		fields[nfields++] = (char *)f;
	}
	qsort(fields, nfields, sizeof(fields[0]), cmp_str);
	for (i = 0; i < nfields || i < c->nfields; i++) {
		const char *got = i < nfields ? fields[i] : "(none)";
		const char *want = i < c->nfields ? c->fields[i] : "(none)";

		ck_assert_msg(!strcmp(got, want),
			      "%s: fields differ at %zu: got '%s', expected "
			      "'%s' (detail: %s)",
			      c->dir, i, got, want, err.detail);
	}
	es_error_release(&err);
}
END_TEST

START_TEST(data_cases_are_present)
{
	size_t i, ok = 0, bad = 0;

	ck_assert_msg(!load_problem[0], "%s", load_problem);
	ck_assert_msg(ncases >= 40, "only %zu cases under '%s'", ncases,
		      data_dir);
	for (i = 0; i < ncases; i++) {
		if (!strcmp(cases[i].status, "ok"))
			ok++;
		else
			bad++;
	}
	ck_assert_msg(ok > 0 && bad > 0, "%zu valid and %zu invalid cases", ok,
		      bad);
}
END_TEST

/* ----- the rest, as code ----------------------------------------------- */

static json_t *body_of(const char *s)
{
	struct es_error err = ES_ERROR_INIT;
	json_t *v = es_json_parse_object(s, strlen(s), &err);

	ck_assert_msg(v != NULL, "'%s': %s", s, err.detail);
	return v;
}

START_TEST(parsed_values_and_defaults)
{
	struct es_error err = ES_ERROR_INIT;
	struct open_cmd open;
	struct money_cmd money;
	struct transfer_cmd transfer;
	struct close_cmd close;
	json_t *b;

	b = body_of("{\"owner\": \"Zoë\", \"currency\": \"EUR\"}");
	ck_assert_int_eq(cmd_parse_open(b, &open, &err), 0);
	ck_assert_str_eq(open.owner, "Zoë");
	ck_assert_str_eq(open.currency, "EUR");
	ck_assert_int_eq(open.overdraft_limit, 0);
	json_decref(b);

	b = body_of("{\"amount\": 250}");
	ck_assert_int_eq(cmd_parse_money("AAAAAAAA-bbbb-4CCC-8ddd-EEEEEEEEEEEE",
					 b, &money, &err),
			 0);
	ck_assert_str_eq(money.account_id,
			 "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
	ck_assert_int_eq(money.amount, 250);
	ck_assert_ptr_null(money.reference);
	ck_assert_int_eq(money.expected_version, -1);
	json_decref(b);

	b = body_of("{\"amount\": 7, \"reference\": \"r\", "
		    "\"expected_version\": 0}");
	ck_assert_int_eq(cmd_parse_money(A_ID, b, &money, &err), 0);
	ck_assert_str_eq(money.reference, "r");
	ck_assert_int_eq(money.expected_version, 0);
	json_decref(b);

	b = body_of("{\"from\": \"" A_ID "\", \"to\": \"" B_ID "\", "
		    "\"amount\": 3, \"transfer_id\": "
		    "\"ABCDEF00-0000-4000-8000-000000000000\"}");
	ck_assert_int_eq(cmd_parse_transfer(b, &transfer, &err), 0);
	ck_assert_str_eq(transfer.transfer_id,
			 "abcdef00-0000-4000-8000-000000000000");
	ck_assert_str_eq(transfer.from, A_ID);
	ck_assert_str_eq(transfer.to, B_ID);
	ck_assert_int_eq(transfer.amount, 3);
	ck_assert_ptr_null(transfer.reference);
	json_decref(b);

	ck_assert_int_eq(cmd_parse_close(A_ID, NULL, &close, &err), 0);
	ck_assert_str_eq(close.account_id, A_ID);
	ck_assert_int_eq(close.expected_version, -1);
	ck_assert_int_eq(err.code, ES_OK);
}
END_TEST

START_TEST(absent_ids_are_generated_fresh)
{
	struct es_error err = ES_ERROR_INIT;
	struct open_cmd o1, o2;
	struct transfer_cmd t1, t2;
	json_t *b;

	b = body_of("{\"owner\": \"Ada\", \"currency\": \"EUR\"}");
	ck_assert_int_eq(cmd_parse_open(b, &o1, &err), 0);
	ck_assert_int_eq(cmd_parse_open(b, &o2, &err), 0);
	ck_assert(is_lower_uuid(o1.account_id));
	ck_assert_str_ne(o1.account_id, o2.account_id);
	json_decref(b);
	b = body_of("{\"from\": \"" A_ID "\", \"to\": \"" B_ID "\", "
		    "\"amount\": 3}");
	ck_assert_int_eq(cmd_parse_transfer(b, &t1, &err), 0);
	ck_assert_int_eq(cmd_parse_transfer(b, &t2, &err), 0);
	ck_assert(is_lower_uuid(t1.transfer_id));
	ck_assert_str_ne(t1.transfer_id, t2.transfer_id);
	json_decref(b);
}
END_TEST

static int cmp_uuid(const void *a, const void *b)
{
	return strcmp((const char *)a, (const char *)b);
}

START_TEST(uuid_v4_is_well_formed_and_unique)
{
	static char seen[10000][37];
	int i;

	for (i = 0; i < 10000; i++) {
		es_uuid_v4(seen[i]);
		ck_assert_int_eq(strlen(seen[i]), 36);
		ck_assert(is_lower_uuid(seen[i]));
		ck_assert_int_eq(seen[i][14], '4');
		ck_assert(strchr("89ab", seen[i][19]) != NULL);
	}
	qsort(seen, 10000, sizeof(seen[0]), cmp_uuid);
	for (i = 1; i < 10000; i++)
		if (!strcmp(seen[i - 1], seen[i]))
			ck_abort_msg("es_uuid_v4() gave %s twice", seen[i]);
}
END_TEST

START_TEST(uuid_parsing)
{
	char out[37];

	ck_assert_int_eq(
		es_uuid_parse("123E4567-E89B-12D3-A456-426614174000", out), 0);
	ck_assert_str_eq(out, "123e4567-e89b-12d3-a456-426614174000");
	ck_assert_int_eq(es_uuid_parse(NULL, out), -1);
	ck_assert_int_eq(es_uuid_parse("", out), -1);
	ck_assert_int_eq(
		es_uuid_parse("123e4567-e89b-12d3-a456-42661417400", out), -1);
	ck_assert_int_eq(
		es_uuid_parse("123e4567-e89b-12d3-a456-4266141740000", out),
		-1);
	ck_assert_int_eq(
		es_uuid_parse("123e4567e89b-12d3-a456-4266141740000", out), -1);
	ck_assert_int_eq(
		es_uuid_parse("123e4567-e89b-12d3-a456-42661417400g", out), -1);
	ck_assert_int_eq(
		es_uuid_parse(" 123e4567-e89b-12d3-a456-426614174000", out),
		-1);
	ck_assert_int_eq(
		es_uuid_parse("{123e4567-e89b-12d3-a456-426614174000}", out),
		-1);
}
END_TEST

START_TEST(if_match_holds_one_strong_version)
{
	static const char *const bad[] = {
		"3",	  "W/\"3\"",
		"*",	  "\"3\", \"4\"",
		"\"-1\"", "\"03\"",
		"\"\"",	  "\"3",
		"3\"",	  "\"1234567890123456789\"",
		"\"3x\"", "\" 3\"",
		"\"+3\"", "",
		"\"",
	};
	struct es_error err = ES_ERROR_INIT;
	long long v = 99;
	size_t i;

	ck_assert_int_eq(cmd_parse_if_match(NULL, &v, &err), 0);
	ck_assert_int_eq(v, -1);
	ck_assert_int_eq(cmd_parse_if_match("\"3\"", &v, &err), 0);
	ck_assert_int_eq(v, 3);
	ck_assert_int_eq(cmd_parse_if_match(" \"0\"\t", &v, &err), 0);
	ck_assert_int_eq(v, 0);
	ck_assert_int_eq(cmd_parse_if_match("\"123456789012345678\"", &v, &err),
			 0);
	ck_assert_int_eq(v, 123456789012345678LL);
	ck_assert_int_eq(err.code, ES_OK);
	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		ck_assert_msg(cmd_parse_if_match(bad[i], &v, &err) == -1,
			      "accepted If-Match: %s", bad[i]);
		ck_assert_int_eq(err.code, ES_EMALFORMED);
		es_error_release(&err);
	}
}
END_TEST

/* jansson refuses these before validation sees them: a 400 that says why. */
START_TEST(numbers_jansson_cannot_hold_are_malformed)
{
	static const struct {
		const char *body, *needle;
	} t[] = {
		{ "{\"amount\": 9223372036854775808}", "too big integer" },
		{ "{\"amount\": -9223372036854775809}",
		  "too big negative integer" },
		{ "{\"amount\": 1e400}", "real number overflow" },
		{ "{\"owner\": \"\\ud800\"}", "invalid Unicode" },
	};
	struct es_error err = ES_ERROR_INIT;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		ck_assert_ptr_null(es_json_parse_object(
			t[i].body, strlen(t[i].body), &err));
		ck_assert_int_eq(err.code, ES_EMALFORMED);
		ck_assert_msg(strstr(err.detail, t[i].needle) != NULL,
			      "detail '%s' lacks '%s'", err.detail,
			      t[i].needle);
		es_error_release(&err);
	}
}
END_TEST

START_TEST(raw_append_expected_version_modes)
{
	static const struct {
		const char *value;
		long long want;
	} t[] = { { "\"any\"", ES_ANY },
		  { "\"no_stream\"", ES_NO_STREAM },
		  { "0", 0 },
		  { "17", 17 } };
	struct es_error err = ES_ERROR_INIT;
	struct raw_append_cmd cmd;
	char body[256];
	size_t i;
	json_t *b;

	for (i = 0; i < ARRAY_SIZE(t); i++) {
		snprintf(body, sizeof(body),
			 "{\"expected_version\": %s, \"events\": "
			 "[{\"type\": \"A\", \"data\": {}}]}",
			 t[i].value);
		b = body_of(body);
		ck_assert_int_eq(
			cmd_parse_raw_append("orders-9", b, &cmd, &err), 0);
		ck_assert_int_eq(cmd.expected, t[i].want);
		ck_assert_str_eq(cmd.stream_id, "orders-9");
		json_decref(b);
	}
}
END_TEST

START_TEST(raw_append_holds_at_most_1000_events)
{
	struct es_error err = ES_ERROR_INIT;
	struct raw_append_cmd cmd;
	json_t *b =
		json_pack("{s:s, s:[]}", "expected_version", "any", "events");
	json_t *events = json_object_get(b, "events");
	int i;

	for (i = 0; i < 1000; i++)
		json_array_append_new(
			events, json_pack("{s:s, s:{}}", "type", "A", "data"));
	ck_assert_int_eq(cmd_parse_raw_append("s", b, &cmd, &err), 0);
	json_array_append_new(events,
			      json_pack("{s:s, s:{}}", "type", "A", "data"));
	ck_assert_int_eq(cmd_parse_raw_append("s", b, &cmd, &err), -1);
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_int_eq(json_array_size(err.fields), 1);
	es_error_release(&err);
	json_decref(b);
}
END_TEST

START_TEST(many_unknown_fields_are_counted_not_all_listed)
{
	struct es_error err = ES_ERROR_INIT;
	struct close_cmd cmd;
	json_t *b = json_object(), *last;
	char key[16];
	int i;

	for (i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		json_object_set_new(b, key, json_true());
	}
	ck_assert_int_eq(cmd_parse_close(A_ID, b, &cmd, &err), -1);
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_int_eq(json_array_size(err.fields), 32);
	last = json_array_get(err.fields, 31);
	ck_assert_str_eq(
		json_string_value(json_object_get(last, "message")),
		"unknown field; 68 more unknown fields are not listed");
	es_error_release(&err);
	json_decref(b);
}
END_TEST

START_TEST(echoed_client_text_is_printable_and_short)
{
	struct es_error err = ES_ERROR_INIT;
	struct money_cmd cmd;
	char path[300];
	json_t *b = json_object(), *problem;
	char key[200];
	const char *f;
	int i;

	memset(path, 'x', sizeof(path));
	memcpy(path, "\x01\xff\xc3", 3);
	path[sizeof(path) - 1] = '\0';
	ck_assert_int_eq(cmd_parse_money(path, b, &cmd, &err), -1);
	ck_assert_int_eq(err.code, ES_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(err.detail, "'???xxx"));
	ck_assert_ptr_nonnull(strstr(err.detail, "...' does not exist"));
	problem = es_error_problem(&err);
	ck_assert_ptr_nonnull(problem);
	json_decref(problem);
	es_error_release(&err);

	memset(key, 'k', sizeof(key));
	key[sizeof(key) - 1] = '\0';
	json_object_set_new(b, key, json_null());
	json_object_set_new(b, "amount", json_integer(1));
	ck_assert_int_eq(cmd_parse_money(A_ID, b, &cmd, &err), -1);
	f = json_string_value(
		json_object_get(json_array_get(err.fields, 0), "field"));
	ck_assert_int_eq(strlen(f), 64 + 3);
	es_error_release(&err);
	json_decref(b);

	/* characters of a field name survive, control characters do not */
	b = json_pack("{s:i, s:i}", "amount", 1, "a\nb", 2);
	ck_assert_int_eq(cmd_parse_money(A_ID, b, &cmd, &err), -1);
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(err.fields, 0), "field")),
			 "a?b");
	es_error_release(&err);
	json_decref(b);
	memset(key, 0, sizeof(key));
	for (i = 0; i < 40; i++)
		memcpy(key + 2 * i, "é", 2);
	b = json_pack("{s:i, s:i}", "amount", 1, key, 2);
	ck_assert_int_eq(cmd_parse_money(A_ID, b, &cmd, &err), -1);
	f = json_string_value(
		json_object_get(json_array_get(err.fields, 0), "field"));
	ck_assert_int_eq(strncmp(f, key, 64), 0);
	ck_assert_str_eq(f + 64, "...");
	es_error_release(&err);
	json_decref(b);
}
END_TEST

START_TEST(body_must_be_an_object)
{
	struct es_error err = ES_ERROR_INIT;
	struct open_cmd cmd;
	json_t *b = json_array();

	ck_assert_int_eq(cmd_parse_open(b, &cmd, &err), -1);
	ck_assert_int_eq(err.code, ES_EMALFORMED);
	es_error_release(&err);
	json_decref(b);
}
END_TEST

static Suite *cmd_parse_suite(void)
{
	Suite *s = suite_create("cmd_parse");
	TCase *tc = tcase_create("data");

	tcase_add_test(tc, data_cases_are_present);
	if (ncases > 0)
		tcase_add_loop_test(tc, data_case, 0, (int)ncases);
	suite_add_tcase(s, tc);
	tc = tcase_create("code");
	tcase_add_test(tc, parsed_values_and_defaults);
	tcase_add_test(tc, absent_ids_are_generated_fresh);
	tcase_add_test(tc, uuid_v4_is_well_formed_and_unique);
	tcase_add_test(tc, uuid_parsing);
	tcase_add_test(tc, if_match_holds_one_strong_version);
	tcase_add_test(tc, numbers_jansson_cannot_hold_are_malformed);
	tcase_add_test(tc, raw_append_expected_version_modes);
	tcase_add_test(tc, raw_append_holds_at_most_1000_events);
	tcase_add_test(tc, many_unknown_fields_are_counted_not_all_listed);
	tcase_add_test(tc, echoed_client_text_is_printable_and_short);
	tcase_add_test(tc, body_must_be_an_object);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;

	load_cases();
	sr = srunner_create(cmd_parse_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	free_cases();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
