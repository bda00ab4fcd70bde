/*
 * cmd_round.h - the planning of a group-commit round, as pure functions:
 * no I/O, no locks, no clock. The runner (cmd_runner.h) asks them which
 * commands join a round, which lock stripes to take, and what becomes of
 * each command after the round's batch statement; it does the rest.
 *
 * A round takes the commands in hand, oldest first. A command joins
 * unless it names an id (an account, a stream) or an Idempotency-Key
 * (a claim: a stream that must not exist yet) or an Idempotency-Key
 * that a member names already, or a command under suspicion (solo) is
 * involved: a solo command goes alone. The first member waits for its
 * lock stripes (the round holds none yet, so it cannot deadlock); the
 * others only try theirs, and one whose stripe is busy sits the round
 * out. After COMMAND_RETRIES decisions a command gives up (503).
 */
#ifndef CMD_ROUND_H
#define CMD_ROUND_H

#include <stddef.h>

#include "account_repo.h"
#include "es_error.h"
#include "es_table.h"

/* Decisions of a command after which its next round first waits a bit. */
#define CMD_BACKOFF_AFTER 3

/*
 * Decisions of a command after which it takes the database's lock on its
 * ids (cmd_round_serialize()), and how long a conflict or a write by
 * another process marks an id as contended.
 */
#define CMD_SERIALIZE_AFTER 2
#define CMD_CONTENDED_MS    2000

/* What a command is after a step of the round. */
enum cmd_step {
	CMD_DONE, /* the answer is set */
	CMD_AGAIN, /* decide again in a later round, on fresh state */
	CMD_APPEND, /* append what it decided in this round's statement */
};

/* What planning knows of a command. */
struct cmd_ticket {
	const char *ids[2]; /* what it decides on; ids[1] may be NULL */
	const char *claim; /* a stream it must write first, or NULL */
	const char *key; /* Idempotency-Key, or NULL */
	int attempts; /* decisions so far */
	int solo; /* its round failed for no known reason: it goes alone */
	int locked; /* it goes alone, under the advisory locks of its ids */
};

/* A round being planned: its members' names and the stripes it holds. */
struct cmd_round {
	size_t n; /* members */
	int solo; /* the first member goes alone */
	int locked; /* ... under the advisory locks of its ids */
	size_t *stripes; /* held, in the order taken */
	size_t nstripes;
	unsigned char held[ACCOUNT_REPO_LOCKS];
	struct es_table names; /* ids, claims and keys of the members
				* (borrowed) */
};

/*
 * An empty round for at most `max` commands. -1 when out of memory.
 * ownership: caller frees with cmd_round_release().
 */
int cmd_round_init(struct cmd_round *r, size_t max);
void cmd_round_release(struct cmd_round *r);

enum cmd_admit {
	CMD_ADMIT_JOIN, /* take want[0..*nwant), then cmd_round_join() */
	CMD_ADMIT_SKIP, /* sits this round out */
	CMD_ADMIT_GIVE_UP, /* `retries` decisions did not do: answer 503 */
};

/*
 * Whether `t` may join the round. With CMD_ADMIT_JOIN, want[0..*nwant)
 * are the stripes it needs that the round does not hold, lower first,
 * and *wait says whether to wait for them (the round holds none) or
 * only to try (if one is busy, the command sits the round out).
 * ownership: borrows everything.
 */
enum cmd_admit cmd_round_admit(const struct cmd_round *r,
			       const struct cmd_ticket *t, long retries,
			       size_t want[2], size_t *nwant, int *wait);

/*
 * `t` joined, holding the stripes want[0..nwant) it took.
 * ownership: the round borrows t's names until cmd_round_release().
 */
void cmd_round_join(struct cmd_round *r, const struct cmd_ticket *t,
		    const size_t *want, size_t nwant);

/*
 * A decision failed with `code` on state from the cache (`fresh` 0) or
 * from the database: whether to decide again on fresh state instead of
 * answering. A rejection (404, 409, 412) is only ever answered on fresh
 * state.
 */
int cmd_round_recheck(enum es_err code, int fresh);

/* What a failed batch statement or transaction means for its commands. */
enum cmd_fate {
	CMD_FATE_RETRY, /* a lost race: decide again */
	CMD_FATE_SOLO, /* unknown: each decides again in a round of its own */
	CMD_FATE_ANSWER, /* the error is the answer (503 when unreachable) */
};

/*
 * The fate of the `n` commands whose answers rode on a statement or
 * transaction that failed with `code`. A failure that is neither a lost
 * race nor the database going away (a trigger, a constraint, a full
 * disk) may be one command's doing: it must not fail the others.
 */
enum cmd_fate cmd_round_fate(enum es_err code, size_t n);

/*
 * Apply `fate` to `t`: with CMD_FATE_SOLO it goes alone from now on, and
 * the failed decision does not count against it. Returns the command's
 * step: CMD_AGAIN, or CMD_DONE when the error is its answer.
 */
enum cmd_step cmd_round_undo(struct cmd_ticket *t, enum cmd_fate fate);

/*
 * Whether a command that decided `attempts` times, on ids that another
 * process wrote lately (`contended`), takes the stream locks of its
 * streams exclusive (ES_STREAM_LOCK_CLASS, common/es_append.h) before it
 * loads fresh state, decides and appends, in a transaction of its own.
 *
 * Why: without them two processes race on one account optimistically,
 * and the one that loses must load fresh state and append again while the
 * other appends from its cache, in one round trip. When the winner keeps
 * that account busy, each try of the loser spans one of the winner's
 * appends and conflicts again, until COMMAND_RETRIES run out. Every
 * append takes the same locks shared (0014_append_stream_locks.sql), so
 * the winner's next append waits for the locked command's commit, reads
 * its write and conflicts: its process marks the account contended and
 * takes the locks too, and PostgreSQL serves the processes in turn. A
 * locked command cannot conflict with an append that takes the locks, so
 * a command decides at most CMD_SERIALIZE_AFTER + 1 times (the last under
 * the locks) unless something fails. A process that sees another's write on an
 * id (a conflict, or a fresh load ahead of its cache) marks it contended
 * for CMD_CONTENDED_MS; uncontended ids keep the fast path.
 */
int cmd_round_serialize(int attempts, int contended);

/*
 * How long (microseconds) to wait before a round whose oldest command
 * decided `attempts` times already (two processes racing for one
 * account): 0 before CMD_BACKOFF_AFTER, else 50 us plus up to 0.2 ms per
 * decision (at most 25 of them) of jitter, from the random `noise`; so
 * the racers fall out of step.
 */
unsigned int cmd_round_backoff_us(int attempts, unsigned int noise);

#endif
