/* es_hash.c - FNV-1a, 64 bits (see es_hash.h). */
#include "es_hash.h"

#define FNV_PRIME 1099511628211ULL

uint64_t es_hash_add(uint64_t h, const char *s)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= FNV_PRIME;
	}
	return h;
}

uint64_t es_hash_str(const char *s)
{
	return es_hash_add(ES_HASH_INIT, s);
}
