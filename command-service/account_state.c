/* account_state.c - the command side's account aggregate and its fold. */
#include "account_state.h"

#include <stdio.h>
#include <string.h>

void account_init(struct account *acc, const char *id)
{
	memset(acc, 0, sizeof(*acc));
	snprintf(acc->id, sizeof(acc->id), "%s", id ? id : "");
	snprintf(acc->stream_id, sizeof(acc->stream_id), "%s%s",
		 ES_ACCOUNT_PREFIX, acc->id);
	acc->status = ACCOUNT_NONE;
}

/* The integer `key` of `data` into *out, else ES_EINTERNAL. */
static int need_int(const json_t *data, const char *key, const char *type,
		    long long version, long long *out, struct es_error *err)
{
	const json_t *v = json_object_get(data, key);

	if (!json_is_integer(v))
		return es_error_set(
			err, ES_EINTERNAL,
			"event %lld (%s) has no integer '%s' in its data",
			version, type, key);
	*out = json_integer_value(v);
	return 0;
}

/* The string `key` of `data`, at most `size` - 1 bytes, into `out`. */
static int need_str(const json_t *data, const char *key, const char *type,
		    long long version, char *out, size_t size,
		    struct es_error *err)
{
	const json_t *v = json_object_get(data, key);

	if (!json_is_string(v) || json_string_length(v) >= size ||
	    json_string_length(v) != strlen(json_string_value(v)))
		return es_error_set(
			err, ES_EINTERNAL,
			"event %lld (%s) has no valid string '%s' in its data",
			version, type, key);
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int apply_opened(struct account *acc, const json_t *data,
			long long version, struct es_error *err)
{
	char owner[sizeof(acc->owner)], currency[sizeof(acc->currency)];
	long long limit = 0;

	if (need_str(data, ES_F_OWNER, ES_EV_ACCOUNT_OPENED, version, owner,
		     sizeof(owner), err) < 0 ||
	    need_str(data, ES_F_CURRENCY, ES_EV_ACCOUNT_OPENED, version,
		     currency, sizeof(currency), err) < 0 ||
	    need_int(data, ES_F_OVERDRAFT_LIMIT, ES_EV_ACCOUNT_OPENED, version,
		     &limit, err) < 0)
		return -1;
	if (limit < 0)
		return es_error_set(
			err, ES_EINTERNAL,
			"event %lld (%s) has a negative overdraft_limit",
			version, ES_EV_ACCOUNT_OPENED);
	acc->status = ACCOUNT_OPEN;
	acc->balance = 0;
	acc->overdraft_limit = limit;
	memcpy(acc->owner, owner, sizeof(owner));
	memcpy(acc->currency, currency, sizeof(currency));
	return 0;
}

/* The new limit, and the balance it was checked against. */
static int apply_limit(struct account *acc, const json_t *data,
		       long long version, struct es_error *err)
{
	long long limit = 0, balance = 0;

	if (need_int(data, ES_F_OVERDRAFT_LIMIT, ES_EV_OVERDRAFT_CHANGED,
		     version, &limit, err) < 0 ||
	    need_int(data, ES_F_BALANCE, ES_EV_OVERDRAFT_CHANGED, version,
		     &balance, err) < 0)
		return -1;
	if (limit < 0)
		return es_error_set(
			err, ES_EINTERNAL,
			"event %lld (%s) has a negative overdraft_limit",
			version, ES_EV_OVERDRAFT_CHANGED);
	acc->overdraft_limit = limit;
	acc->balance = balance;
	return 0;
}

static int is_money_event(const char *type)
{
	return !strcmp(type, ES_EV_MONEY_DEPOSITED) ||
	       !strcmp(type, ES_EV_MONEY_WITHDRAWN) ||
	       !strcmp(type, ES_EV_TRANSFER_SENT) ||
	       !strcmp(type, ES_EV_TRANSFER_RECEIVED);
}

int account_apply(struct account *acc, const char *type, const json_t *data,
		  long long version, struct es_error *err)
{
	long long balance = 0;

	if (!type)
		return es_error_set(err, ES_EINTERNAL,
				    "event %lld of '%s' has no type", version,
				    acc->stream_id);
	if (!strcmp(type, ES_EV_ACCOUNT_OPENED)) {
		if (apply_opened(acc, data, version, err) < 0)
			return -1;
	} else if (is_money_event(type)) {
		/* the event states the balance it left; no re-adding */
		if (need_int(data, ES_F_BALANCE_AFTER, type, version, &balance,
			     err) < 0)
			return -1;
		acc->balance = balance;
	} else if (!strcmp(type, ES_EV_OVERDRAFT_CHANGED)) {
		if (apply_limit(acc, data, version, err) < 0)
			return -1;
	} else if (!strcmp(type, ES_EV_ACCOUNT_CLOSED)) {
		/*
		 * only a balance of 0 closes; said here, as a load that
		 * folds an earlier OverdraftLimitChanged right before this
		 * event did not see the money events between them
		 */
		acc->status = ACCOUNT_CLOSED;
		acc->balance = 0;
	}
	acc->version = version;
	return 0;
}
