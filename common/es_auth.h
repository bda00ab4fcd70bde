/*
 * es_auth.h - who is asking: bearer tokens (JWT, RFC 7519) verified
 * against a JWK Set file (RFC 7517), SPEC section 11.
 *
 * The key file (AUTH_JWKS_FILE) is {"keys": [JWK, ...]}, at most
 * ES_AUTH_KEYS_MAX keys, public keys only. A key is used when its `kty`
 * is "RSA" (n, e; 2048 to 16384 bits) or "EC" (crv "P-256", x, y: 32
 * bytes each, on the curve), its `alg`, when given, is RS256 for RSA or
 * ES256 for EC (absent: the one algorithm of its type), its `use`, when
 * given, is "sig" and its `key_ops`, when given, holds "verify". Keys of
 * other types or algorithms (oct, OKP, RS384, PS256, ...) and encryption
 * keys are skipped, as RFC 7517 section 5 asks. The file is refused
 * whole (and on reload the old keys stay) when it is not such an object,
 * when a key of a type we use is malformed (bad base64url, an RSA key
 * under 2048 bits, a point off the curve, RSA with alg ES256, ...), when
 * a key holds private parts (d, p, q, ...: a key file must not hold
 * secrets), when two keys share a `kid`, or when no key is usable. A key
 * without `kid` can only be chosen by a token without one (below).
 *
 * es_auth_verify() checks, in this order, and answers 401 at the first
 * failure with a fixed detail that never repeats the token or a part of
 * it (nor a kid: attacker text):
 *
 *  1. the header is "Bearer <token>" (scheme case-insensitive, one or more
 *     spaces) and the token at most ES_AUTH_TOKEN_MAX bytes;
 *  2. the cache: a token verified before (same SHA-256 of the whole
 *     token, same key set) is answered from memory while its exp, nbf and
 *     iat still pass (step 8's time checks again, with the leeway; past
 *     exp it is refused at once); see below. Before the hash, each
 *     thread's memo: the last token that thread verified or found in the
 *     cache, compared byte for byte, under the same rules (same verifier,
 *     same key set, the time window);
 *  3. the token is three base64url segments (RFC 7515: alphabet A-Z a-z
 *     0-9 - _, no padding, no whitespace, zero unused bits, so that a
 *     token has one spelling), none of them empty: an `alg: none` token,
 *     whose signature is empty, fails here or at step 5;
 *  4. the header decodes to a JSON object: no duplicate member, no NUL,
 *     nesting at most ES_AUTH_JSON_DEPTH (checked before jansson parses,
 *     so attacker input never makes us recurse deep), no `crit` (we
 *     understand no extension, RFC 7515 section 4.1.11);
 *  5. its `alg` is a string, RS256 or ES256: never "none", never HMAC
 *     (HS256 signed with the public key's bytes as secret is the classic
 *     confusion attack; we never take the algorithm from the token);
 *  6. the key: with a `kid`, the key of that kid (unknown: refused); without
 *     one, the only key of the set (several keys: refused rather than
 *     tried one after another - a token names its key); the key's alg must
 *     equal the header's alg. `jku`, `jwk`, `x5u`, `x5c` are ignored: keys
 *     come from the file only;
 *  7. the signature over "<header>.<payload>" with libcrypto: RS256 is
 *     RSASSA-PKCS1-v1_5 with SHA-256 (signature exactly the modulus size),
 *     ES256 is ECDSA P-256 SHA-256 with the JOSE r||s form (exactly 64
 *     bytes), turned into DER for OpenSSL. Only a signed payload is parsed;
 *  8. the payload decodes to a JSON object (as in 4), `exp` is required:
 *     a NumericDate (a JSON number within [0, 253402300799]), and the
 *     token is refused once now >= exp + leeway; `nbf` and `iat`, when
 *     present, are NumericDates not after now + leeway;
 *  9. `iss` equals AUTH_ISSUER exactly; `aud` is a string equal to
 *     AUTH_AUDIENCE, or an array of strings one of which is;
 * 10. `sub` is a non-empty string shorter than ES_AUTH_SUB_MAX without
 *     control characters;
 * 11. roles: the claim at AUTH_ROLES_CLAIM, a member name or a dotted path
 *     through objects ("realm_access.roles"). Absent: no roles (the token
 *     is valid, every role-restricted route answers 403). Present, it must
 *     be an array of strings, and every step of the path before it an
 *     object, else 401; names other than the five roles below are ignored.
 *
 * Every step is bounded: the token's size caps all work (no recursion
 * deeper than ES_AUTH_JSON_DEPTH), the key file holds at most
 * ES_AUTH_KEYS_MAX keys, and a verify tries one key, never a list.
 *
 * The cache holds at most cache_max verified tokens (a 4-way
 * set-associative table; a full set gives up its entry that expires
 * first), keyed by the SHA-256 of the token and stamped with the key
 * set's generation: a reload makes every cached token be verified again,
 * so a key removed from the file stops working at once. cache_max 0
 * turns the cache off.
 *
 * Reload (SIGHUP) builds the new key set aside and swaps a pointer under
 * a mutex; verifiers hold a reference on the set they started with, so a
 * reload never waits for a verify nor frees a key under it.
 */
#ifndef ES_AUTH_H
#define ES_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include <stdint.h>

#include "es_error.h"

/* The roles the access table knows (SPEC section 11); others are ignored. */
enum es_role {
	ES_ROLE_HOLDER = 1u << 0,
	ES_ROLE_MANAGER = 1u << 1,
	ES_ROLE_AUDITOR = 1u << 2,
	ES_ROLE_SERVICE = 1u << 3,
	ES_ROLE_OPERATOR = 1u << 4,
};
#define ES_ROLE_ANY 0x1fu

#define ES_AUTH_SUB_MAX 256 /* bytes of sub and iss, NUL included */

/* The sub of every request when AUTH=off (it has every role). */
#define ES_AUTH_ANONYMOUS "anonymous"

/* Longest token accepted (the part after "Bearer "). */
#define ES_AUTH_TOKEN_MAX 8192
/* Most keys a key file may hold, and its largest size in bytes. */
#define ES_AUTH_KEYS_MAX 64
#define ES_AUTH_FILE_MAX (1024 * 1024)
/* Deepest nesting of arrays and objects in a token's header or payload. */
#define ES_AUTH_JSON_DEPTH 8
/* Longest AUTH_ROLES_CLAIM, and most dotted parts in it. */
#define ES_AUTH_CLAIM_MAX   128
#define ES_AUTH_CLAIM_PARTS 8
/* Smallest RSA key accepted, in bits. */
#define ES_AUTH_RSA_MIN_BITS 2048

/* A verified caller. Plain data: copy it freely. */
struct es_principal {
	char sub[ES_AUTH_SUB_MAX];
	char iss[ES_AUTH_SUB_MAX];
	unsigned int roles; /* enum es_role bits */
	int64_t exp; /* seconds since the epoch */
};

struct es_auth_config {
	const char *mode; /* "jwt" (default) or "off" */
	const char *jwks_file; /* AUTH_JWKS_FILE */
	const char *issuer; /* AUTH_ISSUER */
	const char *audience; /* AUTH_AUDIENCE */
	long leeway_s; /* AUTH_LEEWAY_S, default 30 */
	const char *roles_claim; /* AUTH_ROLES_CLAIM, default "roles" */
	long cache_max; /* verified tokens kept, e.g. 10000 */
};

/*
 * The rows of a service's es_config_var table (es_config.h) that fill `c`
 * (a struct es_auth_config *), like ES_HTTP_CONFIG_VARS. The file, issuer
 * and audience default to empty, which es_auth_new() refuses with
 * AUTH=jwt: with AUTH=off none of them is needed.
 */
/* clang-format off */
#define ES_AUTH_CONFIG_VARS(c)						\
	{ "AUTH", ES_CONFIG_STR, &(c)->mode, "jwt", 0, 0,		\
	  "jwt: every route but /health and /ready needs a bearer token; off: none does (local experiments only)" }, \
	{ "AUTH_JWKS_FILE", ES_CONFIG_STR, &(c)->jwks_file, "", 0, 0,	\
	  "JWK Set file of the token signing keys, re-read on SIGHUP (required with AUTH=jwt)" }, \
	{ "AUTH_ISSUER", ES_CONFIG_STR, &(c)->issuer, "", 0, 0,		\
	  "the iss every token must carry (required with AUTH=jwt)" },	\
	{ "AUTH_AUDIENCE", ES_CONFIG_STR, &(c)->audience, "", 0, 0,	\
	  "what every token's aud must contain (required with AUTH=jwt)" }, \
	{ "AUTH_LEEWAY_S", ES_CONFIG_INT, &(c)->leeway_s, "30", 0, 3600, \
	  "clock skew allowed on exp, nbf and iat, in seconds" },	\
	{ "AUTH_ROLES_CLAIM", ES_CONFIG_STR, &(c)->roles_claim, "roles", \
	  0, 0, "the claim holding the roles; a dotted path such as realm_access.roles works" }, \
	{ "AUTH_CACHE_MAX", ES_CONFIG_INT, &(c)->cache_max, "10000", 0,	\
	  1000000, "verified tokens kept in memory until their exp, 0 for none" }
/* clang-format on */

struct es_auth;

/*
 * Load the key set (mode jwt) or make an instance that verifies nothing
 * (mode off). NULL and ES_EINVALID with a detail naming the setting when
 * the mode is neither, or (mode jwt) the file is unset, unreadable,
 * larger than ES_AUTH_FILE_MAX or refused (see above), issuer or audience
 * is unset or issuer is ES_AUTH_SUB_MAX bytes or longer, leeway_s or
 * cache_max is negative, or roles_claim is not a dotted path (empty
 * parts, over ES_AUTH_CLAIM_MAX bytes or ES_AUTH_CLAIM_PARTS parts).
 * ES_EINTERNAL when out of memory. Logs "auth_keys_loaded" (file, number
 * of keys, of skipped keys).
 * ownership: copies what it keeps of `cfg`; caller frees with
 * es_auth_free().
 */
struct es_auth *es_auth_new(const struct es_auth_config *cfg,
			    struct es_error *err);

/*
 * Re-read AUTH_JWKS_FILE (SIGHUP). On failure (ES_EINVALID, as for
 * es_auth_new) the old keys stay. On success every cached token is
 * verified again on its next use. Thread-safe against concurrent
 * es_auth_verify() and es_auth_reload(). With mode off: 0, nothing done.
 */
int es_auth_reload(struct es_auth *a, struct es_error *err);

/* Free everything; `a` may be NULL. No verify may be running. */
void es_auth_free(struct es_auth *a);

/* Whether the instance was made with mode "off". */
bool es_auth_off(const struct es_auth *a);

/*
 * Whether `authorization` (an Authorization header value, or NULL) tries
 * the Bearer scheme at all. When it does not (no header, Basic, ...),
 * RFC 6750 section 3.1 wants the 401's WWW-Authenticate without an
 * error code; when it does, a failed verify is error="invalid_token".
 */
bool es_auth_is_bearer(const char *authorization);

/*
 * Verify the value of an Authorization header ("Bearer <jwt>", scheme
 * case-insensitive). 0 and *out filled, or -1 with err ES_EUNAUTHORIZED
 * (401) and a detail safe to show (never the token). Thread-safe.
 * `now` in seconds (tests pass a fixed clock; services time(NULL)).
 * ES_EINTERNAL when out of memory, or when `a` was made with mode off
 * (callers check es_auth_off() first).
 */
int es_auth_verify(struct es_auth *a, const char *authorization, int64_t now,
		   struct es_principal *out, struct es_error *err);

/* Counters since es_auth_new(), for tests and metrics. */
struct es_auth_stats {
	uint64_t cache_hits; /* verifies answered from the cache */
	uint64_t cache_misses; /* well-formed tokens looked up, not found */
	uint64_t verified; /* signatures checked and good, claims passed */
	uint64_t refused; /* verifies that answered 401 */
	uint64_t reloads; /* successful reloads */
	size_t cache_entries; /* valid entries of the current key set now */
	size_t cache_max; /* the bound */
	size_t keys; /* keys in the current set */
};

/* Fill `out`; cache_entries takes a walk over the cache (not for hot paths). */
void es_auth_stats(struct es_auth *a, struct es_auth_stats *out);

/* "holder", "manager", "auditor", "service", "operator" for one role bit;
 * NULL for anything else. */
const char *es_role_name(unsigned int role);

/* The role bit of a role name (exact, lower case), or 0. */
unsigned int es_role_parse(const char *name);

/*
 * The names of the role bits in `roles`, ", "-separated in enum order,
 * into `buf` (cut short to fit, always NUL-terminated when size > 0).
 */
void es_role_names(unsigned int roles, char *buf, size_t size);

/*
 * {"sub", "iss", "roles": [names]}: what an event's metadata records of
 * who caused it. NULL when out of memory. ownership: caller decrefs.
 */
json_t *es_principal_json(const struct es_principal *p);

#endif
