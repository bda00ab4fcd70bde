/* es_auth.c - bearer tokens verified against a JWK Set (see es_auth.h). */
#include "es_auth.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "es_json.h"
#include "es_log.h"

/* The largest NumericDate taken: 9999-12-31T23:59:59Z. */
#define DATE_MAX      253402300799LL
#define KID_MAX	      128
#define RSA_MAX_BITS  16384
#define CACHE_WAYS    4
#define CACHE_STRIPES 64
#define HASH_LEN      32

enum alg { ALG_UNSET = 0, ALG_RS256, ALG_ES256 };

/* Numbers for the verifiers (struct es_auth's id), never reused. */
static atomic_uint_fast64_t next_id = 1;

struct key {
	char *kid; /* NULL: the key has none */
	enum alg alg;
	EVP_PKEY *pkey;
};

/* One loaded key file; freed when the last verifier lets go of it. */
struct keyset {
	atomic_uint refs;
	uint64_t gen;
	size_t n;
	struct key keys[ES_AUTH_KEYS_MAX];
};

struct cache_entry {
	unsigned char hash[HASH_LEN];
	uint64_t gen; /* 0: empty (key set generations start at 1) */
	int64_t not_before; /* valid while not_before <= now < exp_limit */
	int64_t exp_limit; /* exp + leeway */
	struct es_principal p;
};

struct es_auth {
	bool off;
	char *jwks_file, *issuer, *audience;
	int64_t leeway;
	char claim[ES_AUTH_CLAIM_MAX];
	const char *parts[ES_AUTH_CLAIM_PARTS]; /* into claim */
	size_t nparts;

	pthread_mutex_t keys_lock; /* guards `keys` (the pointer) */
	struct keyset *keys;
	pthread_mutex_t reload_lock; /* one reload at a time */
	uint64_t last_gen;
	atomic_uint_fast64_t gen; /* keys->gen, readable without the lock */

	struct cache_entry *cache; /* nsets * ways entries, or NULL */
	size_t nsets, ways;
	uint64_t id; /* this verifier's number, for the threads' memos */
	EVP_MD *sha256; /* fetched once: an implicit fetch per hash costs */
	pthread_mutex_t stripes[CACHE_STRIPES];

	atomic_uint_fast64_t hits, misses, verified, refused, reloads;
};

static const char *const role_names[] = {
	"holder", "manager", "auditor", "service", "operator",
};

const char *es_role_name(unsigned int role)
{
	for (size_t i = 0; i < sizeof(role_names) / sizeof(*role_names); i++)
		if (role == 1u << i)
			return role_names[i];
	return NULL;
}

unsigned int es_role_parse(const char *name)
{
	for (size_t i = 0; name && i < sizeof(role_names) / sizeof(*role_names);
	     i++)
		if (strcmp(name, role_names[i]) == 0)
			return 1u << i;
	return 0;
}

void es_role_names(unsigned int roles, char *buf, size_t size)
{
	size_t used = 0;

	if (size)
		buf[0] = '\0';
	for (size_t i = 0; i < sizeof(role_names) / sizeof(*role_names); i++) {
		int n;

		if (!(roles & 1u << i) || used >= size)
			continue;
		n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "",
			     role_names[i]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

json_t *es_principal_json(const struct es_principal *p)
{
	json_t *o = json_object(), *roles = json_array();

	/*
	 * sub and iss come from a verified token's JSON (or are ours with
	 * AUTH=off): UTF-8 already, so the _nocheck calls; one per command.
	 */
	if (!o || !roles)
		goto fail;
	for (size_t i = 0; i < sizeof(role_names) / sizeof(*role_names); i++)
		if (p->roles & 1u << i &&
		    json_array_append_new(
			    roles, json_string_nocheck(role_names[i])) < 0)
			goto fail;
	if (json_object_set_new_nocheck(o, "sub", json_string_nocheck(p->sub)) <
		    0 ||
	    json_object_set_new_nocheck(o, "iss", json_string_nocheck(p->iss)) <
		    0 ||
	    json_object_set_new_nocheck(o, "roles", roles) < 0) {
		roles = NULL; /* taken, even on failure */
		goto fail;
	}
	return o;
fail:
	json_decref(roles);
	json_decref(o);
	return NULL;
}

/* ---- base64url (RFC 4648 section 5, no padding, canonical) ---- */

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/*
 * Decode `len` characters of `s` into `out` (room for `cap` bytes).
 * Returns the number of bytes, or -1 for a character outside the
 * alphabet, a length no encoding has, unused bits that are not zero, or
 * too little room.
 */
static long b64url_decode(const char *s, size_t len, unsigned char *out,
			  size_t cap)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;

	if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = b64url_value((unsigned char)s[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	if (bits && (acc & ((1u << bits) - 1)))
		return -1;
	return (long)o;
}

/* ---- key file ---- */

static void keyset_free(struct keyset *ks)
{
	if (!ks)
		return;
	for (size_t i = 0; i < ks->n; i++) {
		free(ks->keys[i].kid);
		EVP_PKEY_free(ks->keys[i].pkey);
	}
	free(ks);
}

static void keyset_put(struct keyset *ks)
{
	if (ks && atomic_fetch_sub(&ks->refs, 1) == 1)
		keyset_free(ks);
}

static struct keyset *keyset_get(struct es_auth *a)
{
	struct keyset *ks;

	pthread_mutex_lock(&a->keys_lock);
	ks = a->keys;
	if (ks)
		atomic_fetch_add(&ks->refs, 1);
	pthread_mutex_unlock(&a->keys_lock);
	return ks;
}

/* Decode the base64url member `name` of `jwk`; -1 when absent or bad. */
static long jwk_bytes(const json_t *jwk, const char *name, unsigned char *out,
		      size_t cap)
{
	const char *s = json_string_value(json_object_get(jwk, name));

	if (!s)
		return -1;
	return b64url_decode(s, strlen(s), out, cap);
}

/* A public key from OSSL_PARAMs: "RSA" or "EC". NULL when refused. */
static EVP_PKEY *pkey_from(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = NULL, *check = NULL;
	EVP_PKEY *pkey = NULL;

	if (!params)
		goto out;
	ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!check || EVP_PKEY_public_check(check) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
out:
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	ERR_clear_error();
	return pkey;
}

static EVP_PKEY *rsa_key(const json_t *jwk, const char *what,
			 struct es_error *err)
{
	unsigned char n[RSA_MAX_BITS / 8 + 1], e[16];
	long nlen = jwk_bytes(jwk, "n", n, sizeof(n));
	long elen = jwk_bytes(jwk, "e", e, sizeof(e));
	BIGNUM *bn = NULL, *be = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;
	int bits;

	if (nlen <= 0 || elen <= 0) {
		es_error_set(err, ES_EINVALID,
			     "%s: n and e must be base64url strings", what);
		return NULL;
	}
	bn = BN_bin2bn(n, (int)nlen, NULL);
	be = BN_bin2bn(e, (int)elen, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (!bn || !be || !bld ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be)) {
		es_error_set(err, ES_EINTERNAL, "%s: out of memory", what);
		goto out;
	}
	pkey = pkey_from("RSA", bld);
	if (!pkey) {
		es_error_set(err, ES_EINVALID, "%s: not a valid RSA public key",
			     what);
		goto out;
	}
	bits = EVP_PKEY_get_bits(pkey);
	if (bits < ES_AUTH_RSA_MIN_BITS || bits > RSA_MAX_BITS) {
		es_error_set(err, ES_EINVALID,
			     "%s: RSA key of %d bits, %d to %d accepted", what,
			     bits, ES_AUTH_RSA_MIN_BITS, RSA_MAX_BITS);
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
out:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	return pkey;
}

static EVP_PKEY *ec_key(const json_t *jwk, const char *what,
			struct es_error *err)
{
	unsigned char pub[65];
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	pub[0] = 0x04; /* uncompressed point: x || y */
	if (jwk_bytes(jwk, "x", pub + 1, 32) != 32 ||
	    jwk_bytes(jwk, "y", pub + 33, 32) != 32) {
		es_error_set(
			err, ES_EINVALID,
			"%s: x and y must be base64url strings of 32 bytes",
			what);
		return NULL;
	}
	bld = OSSL_PARAM_BLD_new();
	if (!bld ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
					     "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub,
					      sizeof(pub))) {
		es_error_set(err, ES_EINTERNAL, "%s: out of memory", what);
		goto out;
	}
	pkey = pkey_from("EC", bld);
	if (!pkey)
		es_error_set(
			err, ES_EINVALID,
			"%s: not a valid P-256 public key (a point off the curve?)",
			what);
out:
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

static bool has_any(const json_t *jwk, const char *const *names)
{
	for (; *names; names++)
		if (json_object_get(jwk, *names))
			return true;
	return false;
}

/*
 * Load key `i` of the file into `k`. 0 when loaded, 1 when skipped (not
 * ours to use), -1 when the file must be refused.
 */
static int load_key(const json_t *jwk, size_t i, struct key *k,
		    struct es_error *err)
{
	static const char *const rsa_private[] = { "d",	 "p",  "q",   "dp",
						   "dq", "qi", "oth", NULL };
	static const char *const ec_private[] = { "d", NULL };
	const json_t *use, *ops, *kidv, *algv;
	const char *kty, *alg = NULL, *crv;
	char what[KID_MAX + 32];
	bool verify = false;
	size_t j;
	json_t *op;

	snprintf(what, sizeof(what), "key %zu", i);
	if (!json_is_object(jwk))
		return es_error_set(err, ES_EINVALID, "%s is not an object",
				    what);
	kty = json_string_value(json_object_get(jwk, "kty"));
	if (!kty)
		return es_error_set(err, ES_EINVALID, "%s has no kty", what);
	kidv = json_object_get(jwk, "kid");
	if (kidv) {
		const char *kid = json_string_value(kidv);

		if (!kid || !*kid || strlen(kid) > KID_MAX)
			return es_error_set(
				err, ES_EINVALID,
				"%s: kid must be a string of 1 to %d bytes",
				what, KID_MAX);
		snprintf(what, sizeof(what), "key '%s'", kid);
	}
	algv = json_object_get(jwk, "alg");
	if (algv && !(alg = json_string_value(algv)))
		return es_error_set(err, ES_EINVALID, "%s: alg is not a string",
				    what);
	use = json_object_get(jwk, "use");
	if (use && !json_is_string(use))
		return es_error_set(err, ES_EINVALID, "%s: use is not a string",
				    what);
	ops = json_object_get(jwk, "key_ops");
	if (ops && !json_is_array(ops))
		return es_error_set(err, ES_EINVALID,
				    "%s: key_ops is not an array", what);
	json_array_foreach(ops, j, op)
	{
		if (json_is_string(op) &&
		    strcmp(json_string_value(op), "verify") == 0)
			verify = true;
	}
	if ((use && strcmp(json_string_value(use), "sig") != 0) ||
	    (ops && !verify))
		return 1; /* an encryption key, or not for verifying */

	if (strcmp(kty, "RSA") == 0) {
		if (has_any(jwk, rsa_private))
			return es_error_set(
				err, ES_EINVALID,
				"%s holds private parts; the key file must hold public keys only",
				what);
		if (alg && strcmp(alg, "ES256") == 0)
			return es_error_set(err, ES_EINVALID,
					    "%s: alg ES256 on an RSA key",
					    what);
		if (alg && strcmp(alg, "RS256") != 0)
			return 1; /* RS384, PS256, ...: not supported */
		k->alg = ALG_RS256;
		k->pkey = rsa_key(jwk, what, err);
	} else if (strcmp(kty, "EC") == 0) {
		if (has_any(jwk, ec_private))
			return es_error_set(
				err, ES_EINVALID,
				"%s holds private parts; the key file must hold public keys only",
				what);
		crv = json_string_value(json_object_get(jwk, "crv"));
		if (!crv)
			return es_error_set(err, ES_EINVALID, "%s has no crv",
					    what);
		if (alg && strcmp(alg, "RS256") == 0)
			return es_error_set(err, ES_EINVALID,
					    "%s: alg RS256 on an EC key", what);
		if (alg && strcmp(alg, "ES256") != 0)
			return 1; /* ES384, ES512: not supported */
		if (strcmp(crv, "P-256") != 0) {
			if (alg)
				return es_error_set(err, ES_EINVALID,
						    "%s: ES256 needs crv P-256",
						    what);
			return 1;
		}
		k->alg = ALG_ES256;
		k->pkey = ec_key(jwk, what, err);
	} else {
		return 1; /* oct, OKP, ...: never used */
	}
	if (!k->pkey)
		return -1;
	if (kidv) {
		k->kid = strdup(json_string_value(kidv));
		if (!k->kid) {
			EVP_PKEY_free(k->pkey);
			k->pkey = NULL;
			return es_error_set(err, ES_EINTERNAL, "out of memory");
		}
	}
	return 0;
}

/* Read the whole of `path` (at most ES_AUTH_FILE_MAX bytes). */
static char *read_file(const char *path, size_t *len, struct es_error *err)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf = NULL;

	if (!f) {
		es_error_set(err, ES_EINVALID,
			     "cannot read AUTH_JWKS_FILE '%s': %s", path,
			     strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		es_error_set(err, ES_EINVALID,
			     "AUTH_JWKS_FILE '%s' is not a regular file", path);
		goto out;
	}
	if (st.st_size > ES_AUTH_FILE_MAX) {
		es_error_set(err, ES_EINVALID,
			     "AUTH_JWKS_FILE '%s' is larger than %d bytes",
			     path, ES_AUTH_FILE_MAX);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	*len = fread(buf, 1, (size_t)st.st_size + 1, f);
	if (ferror(f) || *len > (size_t)st.st_size) {
		es_error_set(
			err, ES_EINVALID,
			"cannot read AUTH_JWKS_FILE '%s' (changed while read?)",
			path);
		free(buf);
		buf = NULL;
	}
out:
	fclose(f);
	return buf;
}

/* Load `path` as a key set. NULL (ES_EINVALID) when refused. */
static struct keyset *keyset_load(const char *path, size_t *skipped,
				  struct es_error *err)
{
	struct keyset *ks = NULL;
	json_t *root = NULL, *keys, *jwk;
	json_error_t jerr;
	size_t len = 0, i;
	char *buf;

	*skipped = 0;
	buf = read_file(path, &len, err);
	if (!buf)
		return NULL;
	if (es_json_depth(buf, len) > ES_AUTH_JSON_DEPTH) {
		es_error_set(err, ES_EINVALID,
			     "AUTH_JWKS_FILE '%s' is nested too deep", path);
		goto out;
	}
	/* Only the position of a JSON error: its text quotes the file. */
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		es_error_set(
			err, ES_EINVALID,
			"AUTH_JWKS_FILE '%s' is not valid JSON (line %d, column %d)",
			path, jerr.line, jerr.column);
		goto out;
	}
	keys = json_object_get(root, "keys");
	if (!json_is_array(keys)) {
		es_error_set(
			err, ES_EINVALID,
			"AUTH_JWKS_FILE '%s' is not a JWK Set ({\"keys\": [...]})",
			path);
		goto out;
	}
	if (json_array_size(keys) > ES_AUTH_KEYS_MAX) {
		es_error_set(err, ES_EINVALID,
			     "AUTH_JWKS_FILE '%s' has more than %d keys", path,
			     ES_AUTH_KEYS_MAX);
		goto out;
	}
	ks = calloc(1, sizeof(*ks));
	if (!ks) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	atomic_init(&ks->refs, 1);
	json_array_foreach(keys, i, jwk)
	{
		struct key *k = &ks->keys[ks->n];
		int r = load_key(jwk, i, k, err);

		if (r < 0)
			goto fail;
		if (r > 0) {
			(*skipped)++;
			continue;
		}
		for (size_t j = 0; k->kid && j < ks->n; j++)
			if (ks->keys[j].kid &&
			    strcmp(ks->keys[j].kid, k->kid) == 0) {
				es_error_set(
					err, ES_EINVALID,
					"AUTH_JWKS_FILE '%s': two keys have kid '%s'",
					path, k->kid);
				free(k->kid);
				EVP_PKEY_free(k->pkey);
				goto fail;
			}
		ks->n++;
	}
	if (ks->n == 0) {
		es_error_set(
			err, ES_EINVALID,
			"AUTH_JWKS_FILE '%s' has no RS256 or ES256 signing key",
			path);
		goto fail;
	}
	goto out;
fail:
	if (err && err->code == ES_EINVALID &&
	    !strstr(err->detail, "AUTH_JWKS_FILE")) {
		char d[sizeof(err->detail)];

		memcpy(d, err->detail, sizeof(d));
		es_error_release(err);
		es_error_set(err, ES_EINVALID, "AUTH_JWKS_FILE '%s': %s", path,
			     d);
	}
	keyset_free(ks);
	ks = NULL;
out:
	json_decref(root);
	free(buf);
	return ks;
}

/* ---- the instance ---- */

static int set_claim_path(struct es_auth *a, const char *claim,
			  struct es_error *err)
{
	char *p;

	if (!claim || !*claim)
		claim = "roles";
	if (strlen(claim) >= sizeof(a->claim))
		return es_error_set(
			err, ES_EINVALID,
			"'AUTH_ROLES_CLAIM' is longer than %d bytes",
			ES_AUTH_CLAIM_MAX - 1);
	strcpy(a->claim, claim);
	a->nparts = 0;
	for (p = a->claim;;) {
		char *dot = strchr(p, '.');

		if (dot)
			*dot = '\0';
		if (!*p || a->nparts == ES_AUTH_CLAIM_PARTS)
			return es_error_set(
				err, ES_EINVALID,
				"'AUTH_ROLES_CLAIM' must be a claim name or a dotted path of at most %d names, got '%s'",
				ES_AUTH_CLAIM_PARTS, claim);
		a->parts[a->nparts++] = p;
		if (!dot)
			return 0;
		p = dot + 1;
	}
}

static int install_keys(struct es_auth *a, struct es_error *err)
{
	struct keyset *ks, *old;
	size_t skipped, n;

	pthread_mutex_lock(&a->reload_lock);
	ks = keyset_load(a->jwks_file, &skipped, err);
	if (!ks) {
		pthread_mutex_unlock(&a->reload_lock);
		return -1;
	}
	ks->gen = ++a->last_gen;
	n = ks->n; /* once swapped in, another reload may free it */
	pthread_mutex_lock(&a->keys_lock);
	old = a->keys;
	a->keys = ks;
	atomic_store(&a->gen, ks->gen);
	pthread_mutex_unlock(&a->keys_lock);
	pthread_mutex_unlock(&a->reload_lock);
	keyset_put(old);
	es_log(ES_LOG_INFO, "auth_keys_loaded", "{s:s, s:i, s:i}", "file",
	       a->jwks_file, "keys", (int)n, "skipped", (int)skipped);
	return 0;
}

struct es_auth *es_auth_new(const struct es_auth_config *cfg,
			    struct es_error *err)
{
	const char *mode = cfg->mode && *cfg->mode ? cfg->mode : "jwt";
	struct es_auth *a;

	if (strcmp(mode, "jwt") != 0 && strcmp(mode, "off") != 0) {
		es_error_set(err, ES_EINVALID,
			     "'AUTH' must be jwt or off, got '%s'", mode);
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		return NULL;
	}
	a->id = atomic_fetch_add(&next_id, 1);
	pthread_mutex_init(&a->keys_lock, NULL);
	pthread_mutex_init(&a->reload_lock, NULL);
	for (size_t i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_init(&a->stripes[i], NULL);
	if (strcmp(mode, "off") == 0) {
		a->off = true;
		return a;
	}
	if (!cfg->jwks_file || !*cfg->jwks_file) {
		es_error_set(err, ES_EINVALID,
			     "'AUTH_JWKS_FILE' is required with AUTH=jwt");
		goto fail;
	}
	if (!cfg->issuer || !*cfg->issuer ||
	    strlen(cfg->issuer) >= ES_AUTH_SUB_MAX) {
		es_error_set(
			err, ES_EINVALID,
			"'AUTH_ISSUER' is required with AUTH=jwt (1 to %d bytes)",
			ES_AUTH_SUB_MAX - 1);
		goto fail;
	}
	if (!cfg->audience || !*cfg->audience) {
		es_error_set(err, ES_EINVALID,
			     "'AUTH_AUDIENCE' is required with AUTH=jwt");
		goto fail;
	}
	if (cfg->leeway_s < 0 || cfg->leeway_s > 86400) {
		es_error_set(err, ES_EINVALID,
			     "'AUTH_LEEWAY_S' must be in [0, 86400], got %ld",
			     cfg->leeway_s);
		goto fail;
	}
	if (cfg->cache_max < 0 || cfg->cache_max > 1000000) {
		es_error_set(
			err, ES_EINVALID,
			"'AUTH_CACHE_MAX' must be in [0, 1000000], got %ld",
			cfg->cache_max);
		goto fail;
	}
	a->leeway = cfg->leeway_s;
	if (set_claim_path(a, cfg->roles_claim, err) < 0)
		goto fail;
	a->jwks_file = strdup(cfg->jwks_file);
	a->issuer = strdup(cfg->issuer);
	a->audience = strdup(cfg->audience);
	a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!a->jwks_file || !a->issuer || !a->audience || !a->sha256) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto fail;
	}
	if (cfg->cache_max > 0) {
		a->ways = cfg->cache_max < CACHE_WAYS ? (size_t)cfg->cache_max
						      : CACHE_WAYS;
		a->nsets = (size_t)cfg->cache_max / a->ways;
		a->cache = calloc(a->nsets * a->ways, sizeof(*a->cache));
		if (!a->cache) {
			es_error_set(err, ES_EINTERNAL,
				     "out of memory for AUTH_CACHE_MAX %ld",
				     cfg->cache_max);
			goto fail;
		}
	}
	if (install_keys(a, err) < 0)
		goto fail;
	return a;
fail:
	es_auth_free(a);
	return NULL;
}

int es_auth_reload(struct es_auth *a, struct es_error *err)
{
	if (!a || a->off)
		return 0;
	if (install_keys(a, err) < 0)
		return -1;
	atomic_fetch_add(&a->reloads, 1);
	return 0;
}

void es_auth_free(struct es_auth *a)
{
	if (!a)
		return;
	keyset_put(a->keys);
	EVP_MD_free(a->sha256);
	free(a->cache);
	free(a->jwks_file);
	free(a->issuer);
	free(a->audience);
	pthread_mutex_destroy(&a->keys_lock);
	pthread_mutex_destroy(&a->reload_lock);
	for (size_t i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_destroy(&a->stripes[i]);
	free(a);
}

bool es_auth_off(const struct es_auth *a)
{
	return a && a->off;
}

/* ---- the cache ---- */

/* Where a verified token holds: keys of `gen`, now in [not_before, exp_limit).
 */
struct window {
	uint64_t gen;
	int64_t not_before;
	int64_t exp_limit;
};

/*
 * Each thread's memo: the last token it verified or found in the cache,
 * whole, with its principal. A client sends the same token request
 * after request, and a comparison of its bytes costs far less than its
 * SHA-256 and the cache's lock. The memo follows the cache's rules (the
 * key set's generation, the time window, AUTH_CACHE_MAX 0 turns it
 * off); it is bounded by the number of threads, freed (wiped) when the
 * thread ends.
 */
struct memo {
	uint64_t auth_id; /* the es_auth it belongs to, 0: empty */
	struct window w;
	struct es_principal p;
	size_t len;
	char tok[ES_AUTH_TOKEN_MAX];
};

static pthread_key_t memo_key;
static pthread_once_t memo_once = PTHREAD_ONCE_INIT;
static bool memo_ok; /* the key exists */
static _Thread_local struct memo *memo;

static void memo_free(void *m)
{
	if (!m)
		return;
	memset(m, 0, sizeof(struct memo));
	free(m);
}

static void memo_init(void)
{
	memo_ok = pthread_key_create(&memo_key, memo_free) == 0;
}

/* The memo of `a` for `tok`, or NULL. */
static const struct memo *memo_find(const struct es_auth *a, const char *tok,
				    size_t len)
{
	const struct memo *m = memo;

	if (!m || m->auth_id != a->id || m->len != len ||
	    m->w.gen != atomic_load(&a->gen) || memcmp(m->tok, tok, len) != 0)
		return NULL;
	return m;
}

/* Remember `tok` for this thread (out of memory: not at all). */
static void memo_store(const struct es_auth *a, const char *tok, size_t len,
		       const struct window *w, const struct es_principal *p)
{
	struct memo *m = memo;

	if (!m) {
		pthread_once(&memo_once, memo_init);
		if (!memo_ok || !(m = malloc(sizeof(*m))))
			return;
		if (pthread_setspecific(memo_key, m) != 0) {
			free(m);
			return;
		}
		memo = m;
	}
	m->auth_id = a->id;
	m->w = *w;
	m->p = *p;
	m->len = len;
	memcpy(m->tok, tok, len);
}

static size_t cache_set(const struct es_auth *a, const unsigned char *hash)
{
	uint64_t h;

	memcpy(&h, hash, sizeof(h));
	return (size_t)(h % a->nsets);
}

/*
 * 1 and *out filled when `hash` is cached for the current keys and valid
 * at `now`; -1 when it is cached but expired; 0 otherwise.
 */
static int cache_lookup(struct es_auth *a, const unsigned char *hash,
			int64_t now, struct es_principal *out,
			struct window *win)
{
	uint64_t gen = atomic_load(&a->gen);
	size_t set, stripe;
	int r = 0;

	if (!a->cache)
		return 0;
	set = cache_set(a, hash);
	stripe = set % CACHE_STRIPES;
	pthread_mutex_lock(&a->stripes[stripe]);
	for (size_t w = 0; w < a->ways; w++) {
		struct cache_entry *e = &a->cache[set * a->ways + w];

		if (e->gen != gen || memcmp(e->hash, hash, HASH_LEN) != 0)
			continue;
		if (now >= e->exp_limit) {
			r = -1;
		} else if (now >= e->not_before) {
			*out = e->p;
			win->gen = gen;
			win->not_before = e->not_before;
			win->exp_limit = e->exp_limit;
			r = 1;
		}
		break;
	}
	pthread_mutex_unlock(&a->stripes[stripe]);
	return r;
}

static void cache_insert(struct es_auth *a, const unsigned char *hash,
			 uint64_t gen, int64_t now, int64_t not_before,
			 int64_t exp_limit, const struct es_principal *p)
{
	struct cache_entry *victim = NULL, *entries;
	size_t set, stripe;

	if (!a->cache || gen != atomic_load(&a->gen))
		return;
	set = cache_set(a, hash);
	stripe = set % CACHE_STRIPES;
	pthread_mutex_lock(&a->stripes[stripe]);
	entries = &a->cache[set * a->ways];
	/* The same token (another thread was first), else a free entry
	 * (empty, of older keys, or expired), else the one expiring first. */
	for (size_t w = 0; w < a->ways && !victim; w++)
		if (entries[w].gen == gen &&
		    memcmp(entries[w].hash, hash, HASH_LEN) == 0)
			victim = &entries[w];
	for (size_t w = 0; w < a->ways && !victim; w++)
		if (entries[w].gen != gen || now >= entries[w].exp_limit)
			victim = &entries[w];
	if (!victim) {
		victim = &entries[0];
		for (size_t w = 1; w < a->ways; w++)
			if (entries[w].exp_limit < victim->exp_limit)
				victim = &entries[w];
	}
	memcpy(victim->hash, hash, HASH_LEN);
	victim->gen = gen;
	victim->not_before = not_before;
	victim->exp_limit = exp_limit;
	victim->p = *p;
	pthread_mutex_unlock(&a->stripes[stripe]);
}

void es_auth_stats(struct es_auth *a, struct es_auth_stats *out)
{
	struct keyset *ks;

	memset(out, 0, sizeof(*out));
	if (!a)
		return;
	out->cache_hits = atomic_load(&a->hits);
	out->cache_misses = atomic_load(&a->misses);
	out->verified = atomic_load(&a->verified);
	out->refused = atomic_load(&a->refused);
	out->reloads = atomic_load(&a->reloads);
	out->cache_max = a->nsets * a->ways;
	if (a->off)
		return;
	ks = keyset_get(a);
	out->keys = ks ? ks->n : 0;
	for (size_t set = 0; set < a->nsets; set++) {
		size_t stripe = set % CACHE_STRIPES;

		pthread_mutex_lock(&a->stripes[stripe]);
		for (size_t w = 0; w < a->ways; w++)
			if (ks && a->cache[set * a->ways + w].gen == ks->gen)
				out->cache_entries++;
		pthread_mutex_unlock(&a->stripes[stripe]);
	}
	keyset_put(ks);
}

/* ---- verification ---- */

bool es_auth_is_bearer(const char *authorization)
{
	return authorization && strncasecmp(authorization, "Bearer", 6) == 0 &&
	       (authorization[6] == ' ' || authorization[6] == '\0');
}

static int refuse(struct es_auth *a, struct es_error *err, const char *why)
{
	atomic_fetch_add(&a->refused, 1);
	return es_error_set(err, ES_EUNAUTHORIZED, "%s", why);
}

/* A JSON object from decoded header or payload bytes, or NULL. */
static json_t *parse_object(const unsigned char *buf, size_t len)
{
	json_error_t jerr;
	json_t *v;

	if (len == 0 || memchr(buf, '\0', len) ||
	    es_json_depth((const char *)buf, len) > ES_AUTH_JSON_DEPTH)
		return NULL;
	/* Without JSON_DECODE_ANY the top level is an object or an array. */
	v = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (v && !json_is_object(v)) {
		json_decref(v);
		v = NULL;
	}
	return v;
}

/* A NumericDate: -1 unless a number in [0, DATE_MAX]. */
static int numeric_date(const json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		if (i < 0 || i > DATE_MAX)
			return -1;
		*out = (int64_t)i;
		return 0;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);

		if (!(d >= 0 && d <= (double)DATE_MAX))
			return -1;
		*out = (int64_t)d;
		return 0;
	}
	return -1;
}

/* 1 good, 0 bad, -1 out of memory. */
static int check_signature(const struct key *k, const unsigned char *msg,
			   size_t mlen, const unsigned char *sig, size_t slen)
{
	unsigned char der[80];
	const unsigned char *vsig = sig;
	size_t vlen = slen;
	EVP_MD_CTX *ctx;
	int ok;

	if (k->alg == ALG_ES256) {
		ECDSA_SIG *es;
		BIGNUM *r, *s;
		unsigned char *p = der;
		int n;

		if (slen != 64)
			return 0;
		es = ECDSA_SIG_new();
		r = BN_bin2bn(sig, 32, NULL);
		s = BN_bin2bn(sig + 32, 32, NULL);
		if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
			ECDSA_SIG_free(es);
			BN_free(r);
			BN_free(s);
			ERR_clear_error();
			return -1;
		}
		n = i2d_ECDSA_SIG(es, NULL);
		if (n > 0 && (size_t)n <= sizeof(der))
			n = i2d_ECDSA_SIG(es, &p);
		else
			n = -1;
		ECDSA_SIG_free(es);
		if (n <= 0) {
			ERR_clear_error();
			return -1;
		}
		vsig = der;
		vlen = (size_t)n;
	} else if (slen != (size_t)EVP_PKEY_get_size(k->pkey)) {
		return 0;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -1;
	ok = EVP_DigestVerifyInit_ex(ctx, NULL, "SHA256", NULL, NULL, k->pkey,
				     NULL) == 1 &&
	     EVP_DigestVerify(ctx, vsig, vlen, msg, mlen) == 1;
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

static const struct key *find_key(const struct keyset *ks, const char *kid)
{
	if (!kid)
		return ks->n == 1 ? &ks->keys[0] : NULL;
	for (size_t i = 0; i < ks->n; i++)
		if (ks->keys[i].kid && strcmp(ks->keys[i].kid, kid) == 0)
			return &ks->keys[i];
	return NULL;
}

static bool audience_ok(const struct es_auth *a, const json_t *aud)
{
	size_t i;
	json_t *v;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), a->audience) == 0;
	if (!json_is_array(aud))
		return false;
	json_array_foreach(aud, i, v)
	{
		if (json_is_string(v) &&
		    strcmp(json_string_value(v), a->audience) == 0)
			return true;
	}
	return false;
}

/* The roles at the claim path: 0 and *roles, or -1 when malformed. */
static int roles_of(const struct es_auth *a, const json_t *payload,
		    unsigned int *roles)
{
	const json_t *v = payload;
	size_t i;
	json_t *r;

	*roles = 0;
	for (size_t p = 0; p < a->nparts; p++) {
		if (!json_is_object(v))
			return -1;
		v = json_object_get(v, a->parts[p]);
		if (!v)
			return 0; /* absent: no roles */
	}
	if (!json_is_array(v))
		return -1;
	json_array_foreach(v, i, r)
	{
		if (!json_is_string(r))
			return -1;
		*roles |= es_role_parse(json_string_value(r));
	}
	return 0;
}

static bool printable_sub(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/*
 * Steps 3 to 11 of es_auth.h for a token not in the cache. `why` is set
 * to the refusal's detail when it returns -1 without an error set.
 */
static int verify_token(struct es_auth *a, const char *tok, size_t len,
			const unsigned char *hash, int64_t now,
			struct es_principal *out, struct window *win,
			const char **why, struct es_error *err)
{
	const char *d1, *d2, *alg_name, *kid = NULL, *sub, *iss;
	unsigned char *buf = NULL, *sig;
	json_t *header = NULL, *payload = NULL, *v;
	struct keyset *ks = NULL;
	const struct key *k;
	int64_t exp, nbf = -1, iat = -1, not_before = INT64_MIN;
	long hlen, plen, slen;
	enum alg alg;
	int ret = -1, r;

	d1 = memchr(tok, '.', len);
	d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
	if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok))) {
		*why = "malformed token (not three dot-separated parts)";
		goto out;
	}
	if (d1 == tok || d2 == d1 + 1) {
		*why = "malformed token (an empty part)";
		goto out;
	}
	if (d2 + 1 == tok + len) {
		*why = "token is not signed";
		goto out;
	}
	buf = malloc(len);
	if (!buf) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	hlen = b64url_decode(tok, (size_t)(d1 - tok), buf, len);
	if (hlen < 0 || !(header = parse_object(buf, (size_t)hlen))) {
		*why = "malformed token header";
		goto out;
	}
	if (json_object_get(header, "crit")) {
		*why = "token header has crit extensions, none is supported";
		goto out;
	}
	alg_name = json_string_value(json_object_get(header, "alg"));
	if (!alg_name) {
		*why = "token header has no alg";
		goto out;
	}
	if (strcmp(alg_name, "RS256") == 0) {
		alg = ALG_RS256;
	} else if (strcmp(alg_name, "ES256") == 0) {
		alg = ALG_ES256;
	} else {
		*why = strcasecmp(alg_name, "none") == 0
			       ? "alg none is not accepted"
			       : "token alg is not accepted (RS256 or ES256)";
		goto out;
	}
	v = json_object_get(header, "kid");
	if (v && !(kid = json_string_value(v))) {
		*why = "malformed token header (kid is not a string)";
		goto out;
	}
	ks = keyset_get(a);
	k = ks ? find_key(ks, kid) : NULL;
	if (!k) {
		*why = kid ? "unknown key id"
			   : "token has no kid and several keys are loaded";
		goto out;
	}
	if (k->alg != alg) {
		*why = "token alg does not match its key";
		goto out;
	}
	sig = buf;
	slen = b64url_decode(d2 + 1, (size_t)(tok + len - d2 - 1), sig, len);
	if (slen < 0) {
		*why = "malformed token signature";
		goto out;
	}
	r = check_signature(k, (const unsigned char *)tok, (size_t)(d2 - tok),
			    sig, (size_t)slen);
	if (r < 0) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	if (r == 0) {
		*why = "invalid token signature";
		goto out;
	}

	plen = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf, len);
	if (plen < 0 || !(payload = parse_object(buf, (size_t)plen))) {
		*why = "malformed token payload";
		goto out;
	}
	v = json_object_get(payload, "exp");
	if (!v) {
		*why = "token has no exp";
		goto out;
	}
	if (numeric_date(v, &exp) < 0) {
		*why = "token exp is not a NumericDate";
		goto out;
	}
	if (now >= exp + a->leeway) {
		*why = "token has expired";
		goto out;
	}
	v = json_object_get(payload, "nbf");
	if (v && numeric_date(v, &nbf) < 0) {
		*why = "token nbf is not a NumericDate";
		goto out;
	}
	if (v && nbf - a->leeway > now) {
		*why = "token is not valid yet (nbf)";
		goto out;
	}
	v = json_object_get(payload, "iat");
	if (v && numeric_date(v, &iat) < 0) {
		*why = "token iat is not a NumericDate";
		goto out;
	}
	if (v && iat - a->leeway > now) {
		*why = "token is issued in the future (iat)";
		goto out;
	}
	iss = json_string_value(json_object_get(payload, "iss"));
	if (!iss || strcmp(iss, a->issuer) != 0) {
		*why = "token issuer is not accepted";
		goto out;
	}
	if (!audience_ok(a, json_object_get(payload, "aud"))) {
		*why = "token audience is not accepted";
		goto out;
	}
	sub = json_string_value(json_object_get(payload, "sub"));
	if (!sub || !*sub || strlen(sub) >= ES_AUTH_SUB_MAX ||
	    !printable_sub(sub)) {
		*why = "token sub is missing or not a usable string";
		goto out;
	}
	memset(out, 0, sizeof(*out));
	if (roles_of(a, payload, &out->roles) < 0) {
		*why = "token roles claim is not an array of strings";
		goto out;
	}
	strcpy(out->sub, sub);
	strcpy(out->iss, iss);
	out->exp = exp;
	if (nbf >= 0)
		not_before = nbf - a->leeway;
	if (iat >= 0 && iat - a->leeway > not_before)
		not_before = iat - a->leeway;
	cache_insert(a, hash, ks->gen, now, not_before, exp + a->leeway, out);
	win->gen = ks->gen;
	win->not_before = not_before;
	win->exp_limit = exp + a->leeway;
	ret = 0;
out:
	keyset_put(ks);
	json_decref(header);
	json_decref(payload);
	free(buf);
	return ret;
}

int es_auth_verify(struct es_auth *a, const char *authorization, int64_t now,
		   struct es_principal *out, struct es_error *err)
{
	unsigned char hash[HASH_LEN];
	unsigned int hash_len = 0;
	const char *tok, *why = NULL;
	const struct memo *m;
	struct window win;
	size_t len;
	int r;

	if (!a || a->off)
		return es_error_set(err, ES_EINTERNAL, "authentication is off");
	if (!es_auth_is_bearer(authorization))
		return refuse(a, err, "missing bearer token");
	for (tok = authorization + 6; *tok == ' '; tok++)
		;
	len = strnlen(tok, ES_AUTH_TOKEN_MAX + 1);
	if (len == 0)
		return refuse(a, err, "missing bearer token");
	if (len > ES_AUTH_TOKEN_MAX)
		return refuse(a, err, "token is too long");
	/* this thread's last token: the cache without its hash and lock */
	m = a->cache ? memo_find(a, tok, len) : NULL;
	if (m && now >= m->w.not_before && now < m->w.exp_limit) {
		*out = m->p;
		atomic_fetch_add(&a->hits, 1);
		return 0;
	}
	if (EVP_Digest(tok, len, hash, &hash_len, a->sha256, NULL) != 1 ||
	    hash_len != HASH_LEN) {
		ERR_clear_error();
		return es_error_set(err, ES_EINTERNAL, "cannot hash the token");
	}
	r = cache_lookup(a, hash, now, out, &win);
	if (r > 0) {
		atomic_fetch_add(&a->hits, 1);
		memo_store(a, tok, len, &win, out);
		return 0;
	}
	if (r < 0)
		return refuse(a, err, "token has expired");
	atomic_fetch_add(&a->misses, 1);
	if (verify_token(a, tok, len, hash, now, out, &win, &why, err) == 0) {
		atomic_fetch_add(&a->verified, 1);
		if (a->cache)
			memo_store(a, tok, len, &win, out);
		return 0;
	}
	if (why)
		return refuse(a, err, why);
	return -1;
}
