/*
 * cmd_idem.h - Idempotency-Key storage (SPEC section 5): a request with
 * a key is answered from the key's stored row when there is one, and its
 * own answer (2xx, 404, 409, 412) is stored in the transaction of its
 * round, so that a retry gets the same answer byte for byte.
 */
#ifndef CMD_IDEM_H
#define CMD_IDEM_H

#include <libpq-fe.h>
#include <stddef.h>

#include "cmd_request.h"
#include "es_error.h"

/* Prepare the lookup statement on a new connection (the pool's hook). */
int cmd_idem_prepare(PGconn *db, struct es_error *err);

/*
 * Look the request's Idempotency-Key up. 0: not stored yet
 * (cr->fingerprint set); 1: answered from the stored row, or 422 for a
 * key of another request; -1: the database failed (answer set to the
 * problem).
 */
int cmd_idem_lookup(struct cmd_request *cr, PGconn *db);

/*
 * Whether the request's answer goes into its key's row: it has a key,
 * was not answered from it, and is 2xx, 404, 409 or 412.
 */
int cmd_idem_storable(const struct cmd_request *cr);

/*
 * Insert the key rows of crs[0..n) (looked up, distinct keys) in one
 * statement, in the caller's transaction. taken[i] says that another
 * request stored crs[i]'s key first (that request's transaction
 * committed meanwhile): the caller must roll back. ES_EUNAVAIL,
 * ES_ECONFLICT (deadlock), ES_EINTERNAL.
 */
int cmd_idem_store(PGconn *db, struct cmd_request **crs, size_t n, int *taken,
		   struct es_error *err);

#endif
