/*
 * account_repo.c - account state at constant cost: a version-checked
 * process cache in front of a two-row load, and the striped locks.
 */
#include "account_repo.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "es_db.h"
#include "es_hash.h"
#include "es_log.h"
#include "es_table.h"

/*
 * The stream's first event and its last, each by one index lookup on
 * events_stream_id_stream_version_key, and its last OverdraftLimitChanged
 * by one on the partial index events_overdraft_limit_idx (migration
 * 0009), which holds only those: the limit a later money event does not
 * restate. Rows come in no promised order; the last two may be one event.
 */
#define SQL_LOAD                                                      \
	"SELECT stream_version, event_type, data::text FROM events"   \
	" WHERE stream_id = $1 AND stream_version = 1"                \
	" UNION ALL"                                                  \
	" (SELECT stream_version, event_type, data::text FROM events" \
	"   WHERE stream_id = $1 AND stream_version > 1"              \
	"   ORDER BY stream_version DESC LIMIT 1)"                    \
	" UNION ALL"                                                  \
	" (SELECT stream_version, event_type, data::text FROM events" \
	"   WHERE stream_id = $1 AND stream_version > 1"              \
	"   AND event_type = '" ES_EV_OVERDRAFT_CHANGED "'"           \
	"   ORDER BY stream_version DESC LIMIT 1)"
#define LOAD_ROWS_MAX 3

/* What the cache keeps of an account: all that the rules need. */
struct entry {
	char id[37]; /* the entry's key in its shard's map */
	enum account_status status;
	long long version;
	long long balance;
	long long overdraft_limit;
	char currency[4];
};

/* One shard of the cache, under its own short lock. */
struct shard {
	pthread_mutex_t cache; /* held for a lookup or an update */
	struct es_table map; /* id -> owned struct entry; room for max */
	size_t max;
	size_t evict_at; /* the slot where the next eviction looks first */
};

struct account_repo {
	struct shard shards[ACCOUNT_REPO_STRIPES];
	/* what commands hold around load-decide-append: database trips */
	pthread_mutex_t locks[ACCOUNT_REPO_LOCKS];
};

/* The lock stripe; the cache shard is the hash % ACCOUNT_REPO_STRIPES. */
static size_t stripe_of(const char *id)
{
	return (size_t)(es_hash_str(id) % ACCOUNT_REPO_LOCKS);
}

struct account_repo *account_repo_new(size_t max)
{
	struct account_repo *repo = calloc(1, sizeof(*repo));
	size_t i, per;

	if (!repo)
		return NULL;
	per = max / ACCOUNT_REPO_STRIPES + 1;
	for (i = 0; i < ACCOUNT_REPO_LOCKS; i++)
		pthread_mutex_init(&repo->locks[i], NULL);
	for (i = 0; i < ACCOUNT_REPO_STRIPES; i++) {
		struct shard *s = &repo->shards[i];

		pthread_mutex_init(&s->cache, NULL);
		s->max = per;
		/* a map that never grows: stores cannot fail to find room */
		if (es_table_reserve(&s->map, per) < 0) {
			account_repo_free(repo);
			return NULL;
		}
	}
	return repo;
}

void account_repo_free(struct account_repo *repo)
{
	size_t i;

	if (!repo)
		return;
	for (i = 0; i < ACCOUNT_REPO_STRIPES; i++) {
		struct shard *s = &repo->shards[i];
		struct es_table_slot *slot;
		size_t at = 0;

		while ((slot = es_table_next(&s->map, &at)))
			free(slot->val.ptr);
		es_table_release(&s->map);
		pthread_mutex_destroy(&s->cache);
	}
	for (i = 0; i < ACCOUNT_REPO_LOCKS; i++)
		pthread_mutex_destroy(&repo->locks[i]);
	free(repo);
}

int account_repo_prepare(PGconn *db, struct es_error *err)
{
	PGresult *res = PQprepare(db, "cmd_account_load", SQL_LOAD, 1, NULL);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		ret = es_db_error(db, res, err);
	PQclear(res);
	return ret;
}

/* ---- locks ---- */

size_t account_repo_stripe(const char *key)
{
	return stripe_of(key);
}

void account_repo_lock_stripe(struct account_repo *repo, size_t stripe)
{
	pthread_mutex_lock(&repo->locks[stripe]);
}

int account_repo_trylock_stripe(struct account_repo *repo, size_t stripe)
{
	return pthread_mutex_trylock(&repo->locks[stripe]) ? -1 : 0;
}

void account_repo_unlock_stripe(struct account_repo *repo, size_t stripe)
{
	pthread_mutex_unlock(&repo->locks[stripe]);
}

/* ---- the cache ---- */

/* s->cache held. Drop the entry of `slot`. */
static void drop(struct shard *s, struct es_table_slot *slot)
{
	free(slot->val.ptr);
	es_table_del(&s->map, slot);
}

/*
 * s->cache held. Drop one entry, whichever comes first from where the
 * last eviction stopped: victims go round the map, and as it is at most
 * half full the search is short.
 */
static void evict_one(struct shard *s)
{
	size_t at = s->evict_at;
	struct es_table_slot *slot = es_table_next(&s->map, &at);

	if (!slot) {
		at = 0;
		slot = es_table_next(&s->map, &at);
		if (!slot)
			return;
	}
	s->evict_at = at; /* one past the victim */
	drop(s, slot);
}

static int cache_get(struct account_repo *repo, const char *id,
		     struct account *acc)
{
	uint64_t h = es_hash_str(id);
	struct shard *s = &repo->shards[h % ACCOUNT_REPO_STRIPES];
	struct es_table_slot *slot;
	int hit = 0;

	pthread_mutex_lock(&s->cache);
	slot = es_table_get(&s->map, id);
	if (slot) {
		const struct entry *e = slot->val.ptr;

		account_init(acc, id);
		acc->status = e->status;
		acc->version = e->version;
		acc->balance = e->balance;
		acc->overdraft_limit = e->overdraft_limit;
		memcpy(acc->currency, e->currency, sizeof(acc->currency));
		hit = 1;
	}
	pthread_mutex_unlock(&s->cache);
	return hit;
}

void account_repo_store(struct account_repo *repo, const struct account *acc)
{
	uint64_t h = es_hash_str(acc->id);
	struct shard *s = &repo->shards[h % ACCOUNT_REPO_STRIPES];
	struct es_table_slot *slot;
	struct entry *e;

	if (acc->status == ACCOUNT_NONE) {
		account_repo_forget(repo, acc->id);
		return;
	}
	pthread_mutex_lock(&s->cache);
	slot = es_table_get(&s->map, acc->id);
	if (!slot) {
		if (s->map.n >= s->max)
			evict_one(s);
		e = calloc(1, sizeof(*e));
		if (!e)
			goto out; /* a cache that misses is still correct */
		memcpy(e->id, acc->id, sizeof(e->id));
		slot = es_table_put(&s->map, e->id, NULL);
		if (!slot) {
			free(e);
			goto out;
		}
		slot->val.ptr = e;
	}
	e = slot->val.ptr;
	e->status = acc->status;
	e->version = acc->version;
	e->balance = acc->balance;
	e->overdraft_limit = acc->overdraft_limit;
	memcpy(e->currency, acc->currency, sizeof(e->currency));
out:
	pthread_mutex_unlock(&s->cache);
}

void account_repo_forget(struct account_repo *repo, const char *id)
{
	uint64_t h = es_hash_str(id);
	struct shard *s = &repo->shards[h % ACCOUNT_REPO_STRIPES];
	struct es_table_slot *slot;

	pthread_mutex_lock(&s->cache);
	slot = es_table_get(&s->map, id);
	if (slot)
		drop(s, slot);
	pthread_mutex_unlock(&s->cache);
}

/* ---- loading ---- */

/* Fold row `i` of `res` into `acc`. */
static int apply_row(struct account *acc, const PGresult *res, int i,
		     struct es_error *err)
{
	long long version = strtoll(PQgetvalue(res, i, 0), NULL, 10);
	json_t *data = json_loads(PQgetvalue(res, i, 2), 0, NULL);
	int ret;

	if (!data)
		return es_error_set(err, ES_EINTERNAL,
				    "event %lld of '%s' is not readable",
				    version, acc->stream_id);
	ret = account_apply(acc, PQgetvalue(res, i, 1), data, version, err);
	json_decref(data);
	return ret;
}

static long long row_version(const PGresult *res, int i)
{
	return strtoll(PQgetvalue(res, i, 0), NULL, 10);
}

/*
 * The rows of SQL_LOAD in version order, each event once, into
 * order[0..*n): the first event, the last OverdraftLimitChanged when it
 * is not the last event, the last event. -1 when there is no version 1.
 */
static int load_order(const PGresult *res, int order[LOAD_ROWS_MAX], int *n)
{
	int i, j, k, rows = PQntuples(res);

	if (rows > LOAD_ROWS_MAX)
		return -1;
	*n = 0;
	for (i = 0; i < rows; i++) {
		for (j = 0; j < *n; j++)
			if (row_version(res, order[j]) == row_version(res, i))
				break;
		if (j < *n)
			continue; /* the last event is the last limit change */
		for (k = *n; k > 0 && row_version(res, order[k - 1]) >
					      row_version(res, i);
		     k--)
			order[k] = order[k - 1];
		order[k] = i;
		(*n)++;
	}
	return *n == 0 || row_version(res, order[0]) == 1 ? 0 : -1;
}

static int load_db(PGconn *db, const char *id, struct account *acc,
		   struct es_error *err)
{
	const char *params[1];
	PGresult *res;
	int i, n = 0, order[LOAD_ROWS_MAX], ret = -1;

	account_init(acc, id);
	params[0] = acc->stream_id;
	res = PQexecPrepared(db, "cmd_account_load", 1, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		es_db_error(db, res, err);
		goto out;
	}
	if (load_order(res, order, &n) < 0) {
		/* events without a first one: the log was tampered with */
		es_error_set(err, ES_EINTERNAL, "stream '%s' has no version 1",
			     acc->stream_id);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (apply_row(acc, res, order[i], err) < 0)
			goto out;
		if (i == 0 && acc->status != ACCOUNT_OPEN) {
			es_error_set(err, ES_EINTERNAL,
				     "stream '%s' does not begin with %s",
				     acc->stream_id, ES_EV_ACCOUNT_OPENED);
			goto out;
		}
	}
	ret = 0;
out:
	if (ret < 0)
		es_log(ES_LOG_ERROR, "account_load_failed", "{s:s, s:s}",
		       "account_id", id, "error", err ? err->detail : "");
	PQclear(res);
	return ret;
}

int account_repo_load(struct account_repo *repo, PGconn *db, const char *id,
		      int fresh, struct account *acc, int *from_db,
		      struct es_error *err)
{
	*from_db = 0;
	if (!fresh && cache_get(repo, id, acc))
		return 0;
	if (load_db(db, id, acc, err) < 0) {
		account_repo_forget(repo, id);
		return -1;
	}
	*from_db = 1;
	account_repo_store(repo, acc);
	return 0;
}
