/*
 * qry_memory.c - the in-memory account view.
 *
 * The map (an es_table) holds pointers to immutable entries (the
 * account and its rendered JSON). Only the log reader changes it: it
 * folds events into a staging map (reading the live map without a lock,
 * being its only writer), renders the changed accounts when it
 * publishes, then swaps the new entries and the new position in under
 * the write lock and frees the old entries after dropping it. Readers copy what
 * they need under the read lock. The lock prefers writers, so a steady stream
 * of GETs cannot hold a batch back.
 */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np */
#include "qry_memory.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "es_db.h"
#include "es_event.h"
#include "es_log.h"
#include "es_read.h"
#include "es_table.h"
#include "views/payload.h"
#include "views/view_account.h"

#define CHECKPOINT_VIEW "accounts" /* the table view we start from */

#define SQL_LOAD_BEGIN "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
/*
 * Taken before the first query, so before the snapshot: a rebuild's swap
 * (which holds ACCESS EXCLUSIVE on the tables) is then wholly before or
 * wholly after what the load sees, rows and checkpoint alike.
 */
#define SQL_LOAD_LOCK \
	"LOCK TABLE view_accounts, projection_checkpoints IN ACCESS SHARE MODE"
#define SQL_LOAD_CHECKPOINT \
	"SELECT position FROM projection_checkpoints WHERE view = $1"
#define SQL_LOAD_ROWS "SELECT " VIEW_ACCOUNT_COLUMNS " FROM view_accounts"

/*
 * An account as published: immutable once in the live map. Compact (the
 * owner is stored once, after the body, not in an 801-byte array): a
 * process may hold millions of them.
 */
struct entry {
	char id[37]; /* first: the map keys on it */
	char currency[4];
	enum view_account_status status;
	long long balance;
	long long overdraft_limit;
	long long version;
	char opened_at[sizeof(((struct view_account *)0)->opened_at)];
	char updated_at[sizeof(((struct view_account *)0)->updated_at)];
	const char *owner; /* into body[], after the JSON */
	size_t len;
	char body[]; /* the JSON of GET /accounts/{id}, NUL-terminated */
};

struct qry_memory {
	pthread_rwlock_t lock;
	/* under lock (the log reader writes with it held for writing) */
	struct es_table live; /* of struct entry */
	char *position;
	int loaded;
	/*
	 * Some account was left out for the cap since the last load: an
	 * account not in `live` may then exist (in view_accounts).
	 */
	int capped;
	size_t bytes; /* entry_bytes() of every entry in `live` */
	size_t max_bytes; /* the cap, 0: none (set before the first load) */
	/* the log reader's own */
	struct es_table
		staged; /* of struct view_account: changed, unpublished */
};

/*
 * ---- the maps ----
 *
 * es_tables of pointers to structs that start with their id, a
 * NUL-terminated string, which is the key (struct entry, struct
 * view_account).
 */

static void *map_get(const struct es_table *m, const char *id)
{
	struct es_table_slot *slot = es_table_get(m, id);

	return slot ? slot->val.ptr : NULL;
}

/*
 * Put `a` under its id; the one it replaces (or NULL) in *old.
 * ownership: the map keeps `a`; the caller frees *old.
 */
static int map_put(struct es_table *m, void *a, void **old)
{
	struct es_table_slot *slot;
	int added;

	slot = es_table_put(m, (const char *)a, &added);
	if (!slot)
		return -1;
	*old = added ? NULL : slot->val.ptr;
	slot->key = (const char *)a; /* the old key goes with the old value */
	slot->val.ptr = a;
	return 0;
}

/* Free every value and the slots. */
static void map_release(struct es_table *m)
{
	struct es_table_slot *slot;
	size_t i = 0;

	while ((slot = es_table_next(m, &i)))
		free(slot->val.ptr);
	es_table_release(m);
}

/* ---- entries ---- */

/* Render `acc` into a new entry. NULL when out of memory. */
static struct entry *entry_new(const struct view_account *acc)
{
	/* rendered straight into text: json_pack() and json_dumps() cost 30x */
	size_t len, olen = strlen(acc->owner);
	char *text = view_account_text(acc, &len);
	struct entry *e = NULL;

	if (!text)
		return NULL;
	e = malloc(sizeof(*e) + len + 1 + olen + 1);
	if (e) {
		memcpy(e->id, acc->id, sizeof(e->id));
		memcpy(e->currency, acc->currency, sizeof(e->currency));
		e->status = acc->status;
		e->balance = acc->balance;
		e->overdraft_limit = acc->overdraft_limit;
		e->version = acc->version;
		memcpy(e->opened_at, acc->opened_at, sizeof(e->opened_at));
		memcpy(e->updated_at, acc->updated_at, sizeof(e->updated_at));
		e->len = len;
		memcpy(e->body, text, len + 1);
		memcpy(e->body + len + 1, acc->owner, olen + 1);
		e->owner = e->body + len + 1;
	}
	free(text);
	return e;
}

/*
 * What an entry costs the process, as the cap counts it: its allocation
 * with malloc's header, and its share of the map's slots (at most half
 * full, so two per entry).
 */
static size_t entry_bytes(const struct entry *e)
{
	return sizeof(*e) + e->len + 1 + strlen(e->owner) + 1 + 16 +
	       2 * sizeof(struct es_table_slot);
}

/* Whether one more entry of `add` bytes goes past the cap. */
static int over_cap(size_t max_bytes, size_t bytes, size_t add)
{
	return max_bytes && bytes + add > max_bytes;
}

/* The account an entry holds, for folding more events into it. */
static void entry_account(const struct entry *e, struct view_account *acc)
{
	memset(acc, 0, sizeof(*acc));
	memcpy(acc->id, e->id, sizeof(acc->id));
	snprintf(acc->owner, sizeof(acc->owner), "%s", e->owner);
	memcpy(acc->currency, e->currency, sizeof(acc->currency));
	acc->status = e->status;
	acc->balance = e->balance;
	acc->overdraft_limit = e->overdraft_limit;
	acc->version = e->version;
	memcpy(acc->opened_at, e->opened_at, sizeof(acc->opened_at));
	memcpy(acc->updated_at, e->updated_at, sizeof(acc->updated_at));
}

/* ---- publishing ---- */

/*
 * view_accounts and its checkpoint, as one REPEATABLE READ transaction
 * on `db` sees them, into `into` and `cur`.
 */
static int load(PGconn *db, struct es_table *into, struct es_cursor *cur,
		size_t max_bytes, size_t *bytes, int *capped,
		struct es_error *err)
{
	const char *params[1] = { CHECKPOINT_VIEW };
	PGresult *res = NULL;
	int i, ret = -1;

	es_cursor_init(cur);
	*bytes = 0;
	*capped = 0;
	if (es_db_exec(db, SQL_LOAD_BEGIN, err) < 0 ||
	    es_db_exec(db, SQL_LOAD_LOCK, err) < 0)
		goto out;
	res = PQexecParams(db, SQL_LOAD_CHECKPOINT, 1, NULL, params, NULL, NULL,
			   0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	if (PQntuples(res) == 1 &&
	    es_cursor_parse(PQgetvalue(res, 0, 0), cur, err) < 0)
		goto out;
	if (PQntuples(res) == 0) {
		/* nothing projected yet: the whole log, from the start */
		ret = es_db_exec(db, "COMMIT", err);
		goto out;
	}
	PQclear(res);
	res = PQexec(db, SQL_LOAD_ROWS);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	for (i = 0; i < PQntuples(res); i++) {
		struct view_account a;
		struct entry *e;
		void *old;

		if (view_account_from_pg(res, i, 0, &a, err) < 0)
			goto out;
		e = entry_new(&a);
		if (e && over_cap(max_bytes, *bytes, entry_bytes(e))) {
			/* the first ones up to the cap; the rest stay in the
			 * table */
			free(e);
			*capped = 1;
			continue;
		}
		if (!e || map_put(into, e, &old) < 0) {
			free(e);
			es_error_set(err, ES_EINTERNAL, "out of memory");
			goto out;
		}
		*bytes += entry_bytes(e);
		if (old)
			*bytes -= entry_bytes(old);
		free(old);
	}
	ret = es_db_exec(db, "COMMIT", err);
out:
	if (ret < 0) {
		map_release(into);
		es_cursor_release(cur);
	}
	PQclear(res);
	if (PQtransactionStatus(db) != PQTRANS_IDLE)
		PQclear(PQexec(db, "ROLLBACK"));
	return ret;
}

/* Publish `entries[n]` and `position` (taken), then free what they replace. */
static int publish(struct qry_memory *m, struct entry **entries, size_t n,
		   char *position)
{
	void **old = calloc(n + 1, sizeof(*old));
	char *old_position;
	size_t i, done = 0;
	int ret = 0;

	if (!old) {
		free(position);
		return -1;
	}
	pthread_rwlock_wrlock(&m->lock);
	/* all or nothing: a batch half in would be applied twice later */
	if (es_table_reserve(&m->live, n) == 0) {
		for (i = 0; i < n; i++) {
			size_t add = entry_bytes(entries[i]);

			/*
			 * An account not held yet, past the cap, is left out
			 * for good (its later events find it in neither map
			 * and are skipped): GET reads it from view_accounts.
			 */
			if (!es_table_get(&m->live, entries[i]->id) &&
			    over_cap(m->max_bytes, m->bytes, add)) {
				m->capped = 1;
				old[i] = entries[i];
				continue;
			}
			map_put(&m->live, entries[i], &old[i]);
			m->bytes += add;
			if (old[i])
				m->bytes -= entry_bytes(old[i]);
		}
		done = n;
		old_position = m->position;
		m->position = position;
		position = old_position;
	} else {
		ret = -1;
	}
	pthread_rwlock_unlock(&m->lock);
	for (i = 0; i < done; i++)
		free(old[i]);
	for (i = done; i < n; i++)
		free(entries[i]);
	free(old);
	free(position);
	return ret;
}

int qry_memory_apply(struct qry_memory *m, const struct es_event *ev,
		     struct es_error *err)
{
	struct view_account a, *copy;
	const struct entry *e;
	char id[37];
	void *old;
	int r;

	if (!view_event_account(ev, id))
		return 0;
	copy = map_get(&m->staged, id);
	e = copy ? NULL : map_get(&m->live, id);
	/*
	 * Past the cap, an account held in neither map was left out (or
	 * never opened: the table view parks that one): its events are
	 * not this view's. Only an opening may add one (publish() judges).
	 * `capped` is the log reader's to write: read without the lock.
	 */
	if (!copy && !e && m->capped &&
	    (!ev->type || strcmp(ev->type, ES_EV_ACCOUNT_OPENED) != 0))
		return 0;
	if (copy)
		a = *copy;
	else if (e)
		entry_account(e, &a);
	else
		memset(&a, 0, sizeof(a));
	r = view_account_fold(&a, ev, err);
	if (r <= 0 || !a.status)
		return r < 0 ? -1 : 0;
	if (copy) {
		*copy = a;
		return 0;
	}
	copy = malloc(sizeof(*copy));
	if (copy)
		*copy = a;
	if (!copy || map_put(&m->staged, copy, &old) < 0) {
		free(copy);
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	return 0;
}

int qry_memory_publish(struct qry_memory *m, const struct es_cursor *pos,
		       struct es_error *err)
{
	struct entry **entries = calloc(m->staged.n + 1, sizeof(*entries));
	char *position = es_cursor_format(pos);
	struct es_table_slot *slot;
	size_t i = 0, n = 0;
	int ret = -1;

	if (!entries || !position)
		goto out;
	while ((slot = es_table_next(&m->staged, &i))) {
		entries[n] = entry_new(slot->val.ptr);
		if (!entries[n])
			goto out;
		n++;
	}
	ret = publish(m, entries, n, position);
	n = 0; /* publish() took them, and the position */
	position = NULL;
	if (ret == 0)
		map_release(&m->staged);
out:
	for (i = 0; i < n; i++)
		free(entries[i]);
	free(entries);
	free(position);
	if (ret < 0)
		es_error_set(err, ES_EINTERNAL, "out of memory");
	return ret;
}

void qry_memory_discard(struct qry_memory *m)
{
	map_release(&m->staged);
}

int qry_memory_load(struct qry_memory *m, PGconn *db, struct es_cursor *pos,
		    struct es_error *err)
{
	struct es_table loaded = ES_TABLE_INIT;
	char *position;
	struct es_table old;
	size_t bytes;
	int capped;

	if (load(db, &loaded, pos, m->max_bytes, &bytes, &capped, err) < 0)
		return -1;
	position = es_cursor_format(pos);
	if (!position) {
		map_release(&loaded);
		es_cursor_release(pos);
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	map_release(&m->staged);
	pthread_rwlock_wrlock(&m->lock);
	old = m->live;
	m->live = loaded;
	free(m->position);
	m->position = position;
	m->loaded = 1;
	m->bytes = bytes;
	m->capped = capped;
	pthread_rwlock_unlock(&m->lock);
	map_release(&old);
	es_log(ES_LOG_INFO, "memory_loaded", "{s:i, s:s, s:b}", "accounts",
	       (int)m->live.n, "position", m->position, "capped", capped);
	return 0;
}

struct qry_memory *qry_memory_new(struct es_error *err)
{
	struct qry_memory *m = calloc(1, sizeof(*m));
	pthread_rwlockattr_t attr;

	if (!m) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(
		&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&m->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	return m;
}

void qry_memory_free(struct qry_memory *m)
{
	if (!m)
		return;
	map_release(&m->live);
	map_release(&m->staged);
	free(m->position);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

int qry_memory_get(struct qry_memory *m, const char *id,
		   struct qry_memory_read *out, struct es_error *err)
{
	const struct entry *e;
	size_t plen, blen;
	int ret;

	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&m->lock);
	if (!m->loaded) {
		pthread_rwlock_unlock(&m->lock);
		if (err && !es_error_isset(err))
			err->retry_after = 1;
		return es_error_set(err, ES_EUNAVAIL,
				    "the account view is not loaded yet");
	}
	e = (const struct entry *)map_get(&m->live, id);
	blen = e ? e->len : 0;
	plen = strlen(m->position);
	out->mem = malloc(blen + plen + 2);
	if (!out->mem) {
		pthread_rwlock_unlock(&m->lock);
		return es_error_set(err, ES_EINTERNAL, "out of memory");
	}
	/* the body first: the caller may send mem as it is */
	if (e) {
		memcpy(out->mem, e->body, blen + 1);
		out->body = out->mem;
		out->len = blen;
		out->version = e->version;
	}
	memcpy(out->mem + (e ? blen + 1 : 0), m->position, plen + 1);
	out->position = out->mem + (e ? blen + 1 : 0);
	out->capped = m->capped;
	ret = e != NULL;
	pthread_rwlock_unlock(&m->lock);
	return ret;
}

void qry_memory_stats(struct qry_memory *m, struct qry_memory_stats *out)
{
	pthread_rwlock_rdlock(&m->lock);
	out->accounts = m->live.n;
	out->bytes = m->bytes;
	out->max_bytes = m->max_bytes;
	out->capped = m->capped;
	pthread_rwlock_unlock(&m->lock);
}

int qry_memory_holds(struct qry_memory *m, const char *id)
{
	int held;

	/*
	 * Without a cap every account is the memory view's: no second
	 * look-up on GET /accounts/{id}'s path (the cap is set before any
	 * reader runs and never changes).
	 */
	if (!m->max_bytes)
		return 1;
	pthread_rwlock_rdlock(&m->lock);
	held = !m->loaded || !m->capped || map_get(&m->live, id) != NULL;
	pthread_rwlock_unlock(&m->lock);
	return held;
}

void qry_memory_set_cap(struct qry_memory *m, size_t max_bytes)
{
	pthread_rwlock_wrlock(&m->lock);
	m->max_bytes = max_bytes;
	pthread_rwlock_unlock(&m->lock);
}
