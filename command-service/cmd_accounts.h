/*
 * cmd_accounts.h - the account commands (SPEC sections 4 and 5): open,
 * deposit, withdraw, close, transfer. Each route reads parse, validate,
 * load, decide, append, respond.
 */
#ifndef CMD_ACCOUNTS_H
#define CMD_ACCOUNTS_H

struct es_request;

/* POST /accounts */
void cmd_post_open(struct es_request *req);
/* POST /accounts/{id}/deposits */
void cmd_post_deposit(struct es_request *req);
/* POST /accounts/{id}/withdrawals */
void cmd_post_withdraw(struct es_request *req);
/* POST /accounts/{id}/close */
void cmd_post_close(struct es_request *req);
/* POST /transfers */
void cmd_post_transfer(struct es_request *req);

#endif
