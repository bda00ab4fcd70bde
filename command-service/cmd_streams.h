/*
 * cmd_streams.h - the raw append, POST /streams/{stream_id}/events, for
 * streams outside the account category.
 */
#ifndef CMD_STREAMS_H
#define CMD_STREAMS_H

struct es_request;

void cmd_post_stream_events(struct es_request *req);

#endif
