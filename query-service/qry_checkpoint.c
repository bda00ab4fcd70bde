/* qry_checkpoint.c - read and create the rows of projection_checkpoints. */
#include "qry_checkpoint.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "es_db.h"
#include "views/view.h"

#define SQL_ENSURE                                                            \
	"INSERT INTO projection_checkpoints (view, position, epoch, applied," \
	" updated_at)"                                                        \
	" SELECT v, '" ES_CURSOR_START "', 0, 0, now()"                       \
	" FROM json_array_elements_text($1::json) AS v"                       \
	" ON CONFLICT (view) DO NOTHING"

#define SQL_LOAD                                                           \
	"SELECT view, position, coalesce(epoch, 0), coalesce(applied, 0)," \
	" stopped_error, coalesce(stopped_position, -1)"                   \
	" FROM projection_checkpoints"

static char *view_names_json(void)
{
	json_t *a = json_array();
	char *s = NULL;
	size_t i;

	if (!a)
		return NULL;
	for (i = 0; i < view_count; i++)
		if (json_array_append_new(a, json_string(view_all[i]->name)) <
		    0)
			goto out;
	s = json_dumps(a, JSON_COMPACT);
out:
	json_decref(a);
	return s;
}

int qry_checkpoint_ensure(PGconn *db, struct es_error *err)
{
	const char *params[1];
	PGresult *res;
	char *names;
	int ret = 0;

	names = view_names_json();
	if (!names)
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	params[0] = names;
	res = PQexecParams(db, SQL_ENSURE, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		ret = es_db_error(db, res, err);
	PQclear(res);
	free(names);
	return ret;
}

static int view_index(const char *name)
{
	size_t i;

	for (i = 0; i < view_count; i++)
		if (strcmp(view_all[i]->name, name) == 0)
			return (int)i;
	return -1;
}

int qry_checkpoint_load(PGconn *db, int for_update, struct qry_checkpoint *out,
			size_t max, size_t *n, struct es_error *err)
{
	struct qry_checkpoint got[QRY_CHECKPOINT_SLOTS];
	int have[QRY_CHECKPOINT_SLOTS] = { 0 };
	PGresult *res;
	int i, rows, ret = -1;
	size_t k;

	if (view_count > QRY_CHECKPOINT_SLOTS)
		return es_error_set(err, ES_EINTERNAL, "too many views");
	memset(got, 0, sizeof(got));
	res = PQexec(db, for_update ? SQL_LOAD " FOR UPDATE" : SQL_LOAD);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	rows = PQntuples(res);
	for (i = 0; i < rows; i++) {
		int v = view_index(PQgetvalue(res, i, 0));
		struct qry_checkpoint *c;

		if (v < 0 || have[v])
			continue;
		c = &got[v];
		snprintf(c->view, sizeof(c->view), "%s", view_all[v]->name);
		c->text = strdup(PQgetvalue(res, i, 1));
		if (!c->text) {
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
		have[v] = 1;
		if (es_cursor_parse(c->text, &c->pos, NULL) < 0) {
			es_error_set(err, ES_EINTERNAL,
				     "checkpoint of view '%s' does not parse",
				     c->view);
			goto out;
		}
		c->epoch = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		c->applied = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		if (!PQgetisnull(res, i, 4)) {
			c->stopped_error = strdup(PQgetvalue(res, i, 4));
			if (!c->stopped_error) {
				es_error_set(err, ES_EINTERNAL,
					     "out of memory");
				goto out;
			}
		}
		c->stopped_position = strtoll(PQgetvalue(res, i, 5), NULL, 10);
	}
	*n = 0;
	for (k = 0; k < view_count; k++) {
		if (!have[k])
			continue;
		if (*n >= max) {
			es_error_set(err, ES_EINTERNAL, "too many checkpoints");
			goto out;
		}
		out[(*n)++] = got[k];
		memset(&got[k], 0, sizeof(got[k]));
		have[k] = 0;
	}
	ret = 0;
out:
	if (ret < 0) {
		for (k = 0; k < view_count; k++)
			qry_checkpoint_release(&got[k]);
	}
	PQclear(res);
	return ret;
}

void qry_checkpoint_release(struct qry_checkpoint *c)
{
	free(c->text);
	free(c->stopped_error);
	es_cursor_release(&c->pos);
	memset(c, 0, sizeof(*c));
	c->stopped_position = -1;
}
