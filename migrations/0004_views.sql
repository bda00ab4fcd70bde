-- 0004_views.sql - the read side: the query service's projected views,
-- their checkpoints and the projector's leadership row.
--
-- Applied once by bin/migrate; never edit it after it has been applied
-- anywhere: add a new numbered migration instead. When READ_DATABASE_URL
-- names another server, run bin/migrate against it as well (the events
-- table there stays unused).
--
-- Every view table is written only by the projecting query service (the
-- leader, see query-service/qry_tail.c), in the same transaction that moves
-- its checkpoint, from the pure folds in query-service/views/. A rebuild
-- fills `<table>_rebuild` copies and renames them over the live ones in one
-- transaction. Make a copy with view_shadow_create()
-- (query-service/views/bulk.h): CREATE TABLE ... (LIKE <table> INCLUDING
-- ALL) plus the table's storage parameters, which LIKE does not copy. The
-- index names below are the ones PostgreSQL itself generates, so a copy's
-- indexes are named like the live ones with "_rebuild" after the table name
-- and can be renamed back by replacing that prefix.

-- One row per account: the latest state folded from its stream. Pages are
-- left half empty (fillfactor 50) so that the projector's updates find room
-- on the row's own page and stay HOT: no index writes.
CREATE TABLE view_accounts (
	account_id uuid CONSTRAINT view_accounts_pkey PRIMARY KEY,
	owner text NOT NULL,
	currency text NOT NULL,
	balance bigint NOT NULL,
	overdraft_limit bigint NOT NULL,
	status text NOT NULL
		CONSTRAINT view_accounts_status_check
		CHECK (status IN ('open', 'closed')),
	version bigint NOT NULL, -- the stream version of the last event folded
	opened_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	position bigint NOT NULL -- global_position of the last event folded
) WITH (fillfactor = 50);

-- GET /owners/{owner}/accounts
CREATE INDEX view_accounts_owner_account_id_idx
	ON view_accounts (owner, account_id);

COMMENT ON TABLE view_accounts IS
	'Tandem view: one row per account (AccountOpened, money events, AccountClosed folded); written by the query service projector, see query-service/views/account.c';

-- The statement: one row per money movement (MoneyDeposited,
-- MoneyWithdrawn, TransferSent, TransferReceived) of an account.
CREATE TABLE view_statement (
	account_id uuid NOT NULL,
	version bigint NOT NULL, -- the event's stream version
	position bigint NOT NULL, -- its global_position
	kind text NOT NULL
		CONSTRAINT view_statement_kind_check
		CHECK (kind IN ('deposit', 'withdrawal', 'transfer_out',
				'transfer_in')),
	amount bigint NOT NULL,
	balance_after bigint NOT NULL,
	currency text, -- NULL for events written before money events had it
	counterparty uuid, -- the other account of a transfer
	transfer_id uuid,
	reference text,
	recorded_at timestamptz NOT NULL,
	CONSTRAINT view_statement_pkey PRIMARY KEY (account_id, version)
);

-- GET /audit/large-transactions: amount >= threshold, largest first, then
-- in log order
CREATE INDEX view_statement_amount_position_idx
	ON view_statement (amount DESC, position);

COMMENT ON TABLE view_statement IS
	'Tandem view: money movements per account, oldest first by version, each with balance_after; written by the query service projector, see query-service/views/statement.c';

-- Daily totals per UTC day of recorded_at and currency. A transfer is
-- counted once, on its TransferSent.
CREATE TABLE view_daily (
	day date NOT NULL,
	currency text NOT NULL,
	deposits_sum bigint NOT NULL DEFAULT 0,
	deposits_count bigint NOT NULL DEFAULT 0,
	withdrawals_sum bigint NOT NULL DEFAULT 0,
	withdrawals_count bigint NOT NULL DEFAULT 0,
	transfers_sum bigint NOT NULL DEFAULT 0,
	transfers_count bigint NOT NULL DEFAULT 0,
	CONSTRAINT view_daily_pkey PRIMARY KEY (day, currency)
);

COMMENT ON TABLE view_daily IS
	'Tandem view: sums and counts of deposits, withdrawals and transfers per UTC day and currency; written by the query service projector, see query-service/views/daily.c';

-- Where each view stands in the log. `position` is a read token (SPEC
-- section 3, guarantee 5; '0:0:' is the beginning of the log), moved in
-- the transaction that writes the view's rows with
-- UPDATE ... WHERE view = $1 AND position = $old, so a writer that lost
-- the race (a rebuild swapped the table) updates nothing and starts over.
-- `epoch` is the leader epoch that wrote it, `applied` the events folded
-- so far; a malformed event stops the view and leaves its reason and the
-- event's global_position in stopped_error and stopped_position.
CREATE TABLE projection_checkpoints (
	view text CONSTRAINT projection_checkpoints_pkey PRIMARY KEY,
	position text NOT NULL,
	epoch bigint NOT NULL DEFAULT 0,
	applied bigint NOT NULL DEFAULT 0,
	updated_at timestamptz NOT NULL DEFAULT now(),
	stopped_error text,
	stopped_position bigint
);

INSERT INTO projection_checkpoints (view, position)
VALUES ('accounts', '0:0:'), ('statement', '0:0:'), ('daily', '0:0:');

COMMENT ON TABLE projection_checkpoints IS
	'Tandem: each projected view''s position in the log (a read token), moved in the same transaction as the view''s rows; see query-service/qry_tail.c';

-- Projector leadership and fencing: the leader (holder of an advisory lock)
-- bumps epoch when it takes over and checks it, FOR UPDATE, in every batch
-- transaction, so a former leader that was paused cannot commit a batch
-- after another one took over. Exactly one row.
CREATE TABLE projection_leader (
	id int CONSTRAINT projection_leader_pkey PRIMARY KEY
		CONSTRAINT projection_leader_id_check CHECK (id = 1),
	epoch bigint NOT NULL,
	holder text, -- "<host>:<pid>" of the current leader
	since timestamptz
);

INSERT INTO projection_leader (id, epoch) VALUES (1, 0);

COMMENT ON TABLE projection_leader IS
	'Tandem: the query service projector''s leadership epoch (fencing), a single row; see query-service/qry_tail.c';

REVOKE ALL ON view_accounts, view_statement, view_daily,
	projection_checkpoints, projection_leader FROM PUBLIC;
GRANT SELECT ON view_accounts, view_statement, view_daily,
	projection_checkpoints, projection_leader TO tandem_reader;
