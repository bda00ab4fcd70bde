/* cmd_round.c - the planning of a group-commit round, pure. */
#include "cmd_round.h"

#include <stdlib.h>
#include <string.h>

int cmd_round_init(struct cmd_round *r, size_t max)
{
	memset(r, 0, sizeof(*r));
	r->stripes = malloc((2 * max + 1) * sizeof(*r->stripes));
	/*
	 * up to four names a member (two ids, a claim and a key): joins
	 * cannot fail
	 */
	if (!r->stripes || es_table_reserve(&r->names, 4 * max) < 0) {
		cmd_round_release(r);
		return -1;
	}
	return 0;
}

void cmd_round_release(struct cmd_round *r)
{
	free(r->stripes);
	r->stripes = NULL;
	es_table_release(&r->names);
}

/* Whether `t` names an id, claim or key that a member names. */
static int clashes(const struct cmd_round *r, const struct cmd_ticket *t)
{
	for (int i = 0; i < 2; i++)
		if (t->ids[i] && es_table_get(&r->names, t->ids[i]))
			return 1;
	return (t->claim && es_table_get(&r->names, t->claim)) ||
	       (t->key && es_table_get(&r->names, t->key));
}

enum cmd_admit cmd_round_admit(const struct cmd_round *r,
			       const struct cmd_ticket *t, long retries,
			       size_t want[2], size_t *nwant, int *wait)
{
	size_t k = 0, s, i;

	*nwant = 0;
	*wait = r->nstripes == 0;
	if (t->attempts >= retries)
		return CMD_ADMIT_GIVE_UP;
	/* a command under suspicion, or under the locks, goes alone */
	if (r->n > 0 && (t->solo || r->solo || t->locked || r->locked))
		return CMD_ADMIT_SKIP;
	if (clashes(r, t))
		return CMD_ADMIT_SKIP;
	for (i = 0; i < 2; i++) {
		if (!t->ids[i])
			continue;
		s = account_repo_stripe(t->ids[i]);
		if (!r->held[s] && (k == 0 || want[0] != s))
			want[k++] = s;
	}
	if (k == 2 && want[1] < want[0]) {
		s = want[0];
		want[0] = want[1];
		want[1] = s;
	}
	*nwant = k;
	return CMD_ADMIT_JOIN;
}

void cmd_round_join(struct cmd_round *r, const struct cmd_ticket *t,
		    const size_t *want, size_t nwant)
{
	for (int i = 0; i < 2; i++)
		if (t->ids[i])
			es_table_put(&r->names, t->ids[i], NULL);
	if (t->claim)
		es_table_put(&r->names, t->claim, NULL);
	/* a key equal to some id only costs a round's wait */
	if (t->key)
		es_table_put(&r->names, t->key, NULL);
	for (size_t i = 0; i < nwant; i++) {
		r->held[want[i]] = 1;
		r->stripes[r->nstripes++] = want[i];
	}
	if (r->n++ == 0) {
		r->solo = t->solo;
		r->locked = t->locked;
	}
}

int cmd_round_recheck(enum es_err code, int fresh)
{
	return !fresh && (code == ES_ENOTFOUND || code == ES_ECONFLICT ||
			  code == ES_EPRECONDITION);
}

enum cmd_fate cmd_round_fate(enum es_err code, size_t n)
{
	if (code == ES_ECONFLICT)
		return CMD_FATE_RETRY;
	if (code != ES_EUNAVAIL && n > 1)
		return CMD_FATE_SOLO;
	return CMD_FATE_ANSWER;
}

enum cmd_step cmd_round_undo(struct cmd_ticket *t, enum cmd_fate fate)
{
	switch (fate) {
	case CMD_FATE_SOLO:
		t->solo = 1;
		t->attempts--; /* not its fault, as far as we know */
		return CMD_AGAIN;
	case CMD_FATE_RETRY:
		return CMD_AGAIN;
	case CMD_FATE_ANSWER:
		break;
	}
	return CMD_DONE;
}

int cmd_round_serialize(int attempts, int contended)
{
	return contended || attempts >= CMD_SERIALIZE_AFTER;
}

unsigned int cmd_round_backoff_us(int attempts, unsigned int noise)
{
	unsigned int span;

	if (attempts < CMD_BACKOFF_AFTER)
		return 0;
	span = (unsigned int)(attempts < 25 ? attempts : 25) * 200;
	return 50 + noise % span;
}
