/*
 * qry_token_covers.c - print 1 when the read token argv[1] covers the
 * token argv[2] (an append or a read token), else 0; exit 2 when either
 * is malformed. For the integration tests' read-your-writes checks.
 */
#include <stdio.h>

#include "es_token.h"

int main(int argc, char **argv)
{
	struct es_error err = ES_ERROR_INIT;
	int r;

	if (argc != 3) {
		fprintf(stderr, "usage: qry_token_covers READ_TOKEN TOKEN\n");
		return 2;
	}
	r = es_token_covers(argv[1], argv[2], &err);
	if (r < 0) {
		fprintf(stderr, "qry_token_covers: %s\n", err.detail);
		es_error_release(&err);
		return 2;
	}
	printf("%d\n", r);
	return 0;
}
