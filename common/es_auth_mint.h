/*
 * es_auth_mint.h - the signing side of es_auth.h: key pairs, public JWKs
 * and tokens, for bin/tandem-token and the tests. The services never
 * sign; they do not link this file (a static library brings in only the
 * objects a program uses).
 *
 * It signs whatever it is given, bad tokens included (alg none, HS256
 * with a public key's bytes as secret, a header alg that is not the
 * key's): telling good from bad is es_auth_verify()'s job.
 */
#ifndef ES_AUTH_MINT_H
#define ES_AUTH_MINT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>

#include "es_error.h"

/* `len` bytes as base64url without padding. Caller frees with free(). */
char *es_mint_b64url(const void *buf, size_t len);

/*
 * A new key pair for "RS256" (`rsa_bits`, 0 for 2048) or "ES256" (P-256).
 * NULL and ES_EINVALID for another alg or fewer than 1024 bits,
 * ES_EINTERNAL when libcrypto fails. Caller frees with EVP_PKEY_free().
 */
EVP_PKEY *es_mint_keygen(const char *alg, int rsa_bits, struct es_error *err);

/* "RS256" for an RSA key, "ES256" for a P-256 key, else NULL. */
const char *es_mint_alg_of(EVP_PKEY *key);

/*
 * The public JWK of `key`: {kty, kid (unless NULL), alg, use: "sig", n, e}
 * or {..., crv: "P-256", x, y}. Caller frees with json_decref().
 */
json_t *es_mint_jwk(EVP_PKEY *key, const char *kid, struct es_error *err);

/*
 * "<b64url(header)>.<b64url(payload)>.<b64url(signature)>", the
 * signature made over the first two parts by `alg`: "RS256" or "ES256"
 * with `key` (ES256 in the JOSE r||s form), "HS256" with `secret`, or
 * "none" (an empty signature). The header and payload bytes are used as
 * given, so a test can sign malformed ones; the header's alg is not
 * looked at. Caller frees with free(); NULL and ES_EINVALID or
 * ES_EINTERNAL.
 */
char *es_mint_sign(const char *alg, EVP_PKEY *key, const void *secret,
		   size_t secret_len, const char *header, size_t header_len,
		   const char *payload, size_t payload_len,
		   struct es_error *err);

/* es_mint_sign() of two JSON values, dumped compact with sorted keys. */
char *es_mint_sign_json(const char *alg, EVP_PKEY *key, const void *secret,
			size_t secret_len, const json_t *header,
			const json_t *payload, struct es_error *err);

#endif
