/* es_uuid.h - random (version 4) UUIDs. */
#ifndef ES_UUID_H
#define ES_UUID_H

/* Write a new random UUID, lower-case, into `out` (37 bytes with NUL). */
void es_uuid_v4(char out[37]);

#endif
