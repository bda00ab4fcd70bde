/* check_auth.c - bearer tokens: key files, every claims rule, the cache. */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "es_auth.h"
#include "es_auth_mint.h"
#include "es_log.h"

#define ISS    "https://issuer.test"
#define AUD    "tandem"
#define NOW    1700000000LL
#define LEEWAY 30

/* Made once in main(), before Check forks a child per test. */
static char dir[] = "/tmp/check_auth.XXXXXX";
static EVP_PKEY *rsa1, *rsa2, *ec1, *rsa1024;

static char *path_of(const char *name)
{
	static char buf[4][256];
	static int next;
	char *p = buf[next++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", dir, name);
	return p;
}

static void write_text(const char *name, const char *text)
{
	FILE *f = fopen(path_of(name), "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_int_ge(fputs(text, f), 0);
	ck_assert_int_eq(fclose(f), 0);
}

/* A JWK Set file `name` of up to three keys (NULL ends the list). */
static void write_set(const char *name, EVP_PKEY *k1, const char *kid1,
		      EVP_PKEY *k2, const char *kid2, EVP_PKEY *k3,
		      const char *kid3)
{
	EVP_PKEY *keys[] = { k1, k2, k3 };
	const char *kids[] = { kid1, kid2, kid3 };
	json_t *set = json_pack("{s:[]}", "keys");
	char *text;

	for (int i = 0; i < 3 && keys[i]; i++) {
		json_t *jwk = es_mint_jwk(keys[i], kids[i], NULL);

		ck_assert_ptr_nonnull(jwk);
		json_array_append_new(json_object_get(set, "keys"), jwk);
	}
	text = json_dumps(set, JSON_INDENT(1));
	write_text(name, text);
	free(text);
	json_decref(set);
}

static struct es_auth_config config(const char *file)
{
	struct es_auth_config c = {
		.mode = "jwt",
		.jwks_file = path_of(file),
		.issuer = ISS,
		.audience = AUD,
		.leeway_s = LEEWAY,
		.roles_claim = "roles",
		.cache_max = 100,
	};
	return c;
}

static struct es_auth *auth_cfg(const struct es_auth_config *c)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_auth *a = es_auth_new(c, &err);

	ck_assert_msg(a != NULL, "es_auth_new: %s", err.detail);
	return a;
}

/* The usual instance: keys r1 (RSA) and e1 (P-256). */
static struct es_auth *auth(void)
{
	struct es_auth_config c;

	write_set("set.json", rsa1, "r1", ec1, "e1", NULL, NULL);
	c = config("set.json");
	return auth_cfg(&c);
}

/* Claims that pass every check; tests change them. */
static json_t *claims(void)
{
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:[s, s]}", "iss", ISS,
			 "aud", AUD, "sub", "alice", "iat", (json_int_t)NOW,
			 "exp", (json_int_t)(NOW + 300), "roles", "holder",
			 "auditor");
}

/* A token of `payload` (taken) signed by `key` with `alg`; header alg is
 * `alg`, kid `kid` unless NULL. Caller frees. */
static char *mint(EVP_PKEY *key, const char *alg, const char *kid,
		  json_t *payload)
{
	struct es_error err = ES_ERROR_INIT;
	json_t *header = json_pack("{s:s, s:s}", "alg", alg, "typ", "JWT");
	char *tok;

	if (kid)
		json_object_set_new(header, "kid", json_string(kid));
	tok = es_mint_sign_json(alg, key, NULL, 0, header, payload, &err);
	ck_assert_msg(tok != NULL, "mint: %s", err.detail);
	json_decref(header);
	json_decref(payload);
	return tok;
}

/* A token from raw header and payload text, signed by r1. */
static char *mint_raw(const char *header, const char *payload)
{
	char *tok = es_mint_sign("RS256", rsa1, NULL, 0, header, strlen(header),
				 payload, strlen(payload), NULL);

	ck_assert_ptr_nonnull(tok);
	return tok;
}

static int verify_at(struct es_auth *a, const char *tok, int64_t now,
		     struct es_principal *p, struct es_error *err)
{
	size_t n = strlen(tok) + 8;
	char *h = malloc(n);
	int r;

	snprintf(h, n, "Bearer %s", tok);
	r = es_auth_verify(a, h, now, p, err);
	free(h);
	return r;
}

static void accepted(struct es_auth *a, const char *tok, int64_t now)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_principal p;

	ck_assert_msg(verify_at(a, tok, now, &p, &err) == 0, "refused: %s",
		      err.detail);
}

/* Refused with 401, for the reason `want` (a part of the detail). */
static void refused(struct es_auth *a, const char *tok, int64_t now,
		    const char *want)
{
	struct es_error err = ES_ERROR_INIT;
	struct es_principal p;

	ck_assert_int_eq(verify_at(a, tok, now, &p, &err), -1);
	ck_assert_int_eq(err.code, ES_EUNAUTHORIZED);
	ck_assert_uint_eq(es_error_status(err.code), 401);
	ck_assert_msg(strstr(err.detail, want) != NULL,
		      "detail '%s' lacks '%s'", err.detail, want);
}

/* Mint with the usual r1 key a token of claims() changed by `mod`. */
static char *mint_with(json_t *c)
{
	return mint(rsa1, "RS256", "r1", c);
}

START_TEST(a_good_rs256_token_gives_its_principal)
{
	struct es_auth *a = auth();
	char *tok = mint_with(claims());
	struct es_error err = ES_ERROR_INIT;
	struct es_principal p;

	ck_assert_int_eq(verify_at(a, tok, NOW, &p, &err), 0);
	ck_assert_str_eq(p.sub, "alice");
	ck_assert_str_eq(p.iss, ISS);
	ck_assert_uint_eq(p.roles, ES_ROLE_HOLDER | ES_ROLE_AUDITOR);
	ck_assert_int_eq(p.exp, NOW + 300);
	free(tok);
	es_auth_free(a);
}
END_TEST

START_TEST(a_good_es256_token_gives_its_principal)
{
	struct es_auth *a = auth();
	char *tok = mint(ec1, "ES256", "e1", claims());
	struct es_error err = ES_ERROR_INIT;
	struct es_principal p;

	ck_assert_int_eq(verify_at(a, tok, NOW, &p, &err), 0);
	ck_assert_str_eq(p.sub, "alice");
	free(tok);
	es_auth_free(a);
}
END_TEST

START_TEST(the_scheme_is_bearer_in_any_case)
{
	struct es_auth *a = auth();
	char *tok = mint_with(claims()), h[4096];
	struct es_error err = ES_ERROR_INIT;
	struct es_principal p;

	snprintf(h, sizeof(h), "bEaReR   %s", tok);
	ck_assert_int_eq(es_auth_verify(a, h, NOW, &p, &err), 0);
	snprintf(h, sizeof(h), "Basic %s", tok);
	ck_assert_int_eq(es_auth_verify(a, h, NOW, &p, &err), -1);
	ck_assert_int_eq(err.code, ES_EUNAUTHORIZED);
	ck_assert_str_eq(err.detail, "missing bearer token");
	es_error_release(&err);
	ck_assert_int_eq(es_auth_verify(a, NULL, NOW, &p, &err), -1);
	ck_assert_str_eq(err.detail, "missing bearer token");
	es_error_release(&err);
	ck_assert_int_eq(es_auth_verify(a, "Bearer ", NOW, &p, &err), -1);
	ck_assert_str_eq(err.detail, "missing bearer token");
	es_error_release(&err);
	snprintf(h, sizeof(h), "Bearer%s", tok); /* no space */
	ck_assert_int_eq(es_auth_verify(a, h, NOW, &p, &err), -1);

	ck_assert(es_auth_is_bearer("Bearer x"));
	ck_assert(es_auth_is_bearer("bearer x"));
	ck_assert(es_auth_is_bearer("Bearer"));
	ck_assert(!es_auth_is_bearer(NULL));
	ck_assert(!es_auth_is_bearer(""));
	ck_assert(!es_auth_is_bearer("Basic YTpi"));
	ck_assert(!es_auth_is_bearer("Bearerx"));
	free(tok);
	es_auth_free(a);
}
END_TEST

START_TEST(alg_none_is_refused)
{
	struct es_auth *a = auth();
	char *tok = mint(NULL, "none", "r1", claims());
	char *sig, *forged;

	ck_assert_uint_eq(tok[strlen(tok) - 1], '.'); /* empty signature */
	refused(a, tok, NOW, "token is not signed");
	/* With some signature bytes it still names no algorithm we use. */
	sig = es_mint_b64url("0123456789", 10);
	tok[strlen(tok) - 1] = '\0';
	forged = malloc(strlen(tok) + strlen(sig) + 2);
	sprintf(forged, "%s.%s", tok, sig);
	refused(a, forged, NOW, "alg none is not accepted");
	free(forged);
	free(sig);
	free(tok);
	es_auth_free(a);
}
END_TEST

/* HS256 with the public key's bytes as the HMAC secret. */
static char *hs256_with(const void *secret, size_t len, const char *kid)
{
	json_t *header = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "typ",
				   "JWT", "kid", kid);
	json_t *payload = claims();
	char *tok = es_mint_sign_json("HS256", NULL, secret, len, header,
				      payload, NULL);

	ck_assert_ptr_nonnull(tok);
	json_decref(header);
	json_decref(payload);
	return tok;
}

START_TEST(hs256_signed_with_the_public_key_is_refused)
{
	struct es_auth *a = auth();
	json_t *jwk = es_mint_jwk(rsa1, "r1", NULL);
	char *jwk_text = json_dumps(jwk, JSON_COMPACT);
	FILE *f = fopen(path_of("set.json"), "r");
	char file[16384];
	size_t n = fread(file, 1, sizeof(file), f);
	char *t1 = hs256_with(jwk_text, strlen(jwk_text), "r1");
	char *t2 = hs256_with(file, n, "r1");
	char *t3 = hs256_with(file, n, "e1");

	fclose(f);
	refused(a, t1, NOW, "token alg is not accepted");
	refused(a, t2, NOW, "token alg is not accepted");
	refused(a, t3, NOW, "token alg is not accepted");
	free(t1);
	free(t2);
	free(t3);
	free(jwk_text);
	json_decref(jwk);
	es_auth_free(a);
}
END_TEST

START_TEST(an_alg_other_than_the_keys_is_refused)
{
	struct es_auth *a = auth();
	/* ES256 signed by the EC key, but naming the RSA key. */
	char *t1 = mint(ec1, "ES256", "r1", claims());
	/* RS256 signed by the RSA key, naming the EC key. */
	char *t2 = mint(rsa1, "RS256", "e1", claims());

	refused(a, t1, NOW, "token alg does not match its key");
	refused(a, t2, NOW, "token alg does not match its key");
	free(t1);
	free(t2);
	es_auth_free(a);
}
END_TEST

START_TEST(an_unknown_kid_is_refused_and_not_repeated)
{
	struct es_auth *a = auth();
	char *tok = mint(rsa1, "RS256", "kid-of-nobody", claims());
	struct es_error err = ES_ERROR_INIT;
	struct es_principal p;

	refused(a, tok, NOW, "unknown key id");
	ck_assert_int_eq(verify_at(a, tok, NOW, &p, &err), -1);
	ck_assert_ptr_null(strstr(err.detail, "kid-of-nobody"));
	free(tok);
	es_auth_free(a);
}
END_TEST

START_TEST(a_token_without_kid_needs_a_set_of_one_key)
{
	struct es_auth *several = auth(), *one;
	struct es_auth_config c;
	char *tok = mint(rsa1, "RS256", NULL, claims());

	write_set("one.json", rsa1, "r1", NULL, NULL, NULL, NULL);
	c = config("one.json");
	one = auth_cfg(&c);
	accepted(one, tok, NOW);
	refused(several, tok, NOW, "token has no kid and several keys");
	free(tok);
	es_auth_free(one);
	es_auth_free(several);
}
END_TEST

START_TEST(exp_is_required_and_checked_with_the_leeway)
{
	struct es_auth *a = auth();
	json_t *c = claims();
	char *no_exp, *tok, *str_exp;

	json_object_del(c, "exp");
	no_exp = mint_with(c);
	refused(a, no_exp, NOW, "token has no exp");
	c = claims();
	json_object_set_new(c, "exp", json_string("1700000300"));
	str_exp = mint_with(c);
	refused(a, str_exp, NOW, "token exp is not a NumericDate");

	/* exp NOW+300: good until NOW+300+LEEWAY-1. Fresh instances: no
	 * cache between the checks. */
	tok = mint_with(claims());
	accepted(a, tok, NOW + 300 + LEEWAY - 1);
	es_auth_free(a);
	a = auth();
	refused(a, tok, NOW + 300 + LEEWAY, "token has expired");
	es_auth_free(a);
	a = auth();
	refused(a, tok, NOW + 100000, "token has expired");
	free(tok);
	free(no_exp);
	free(str_exp);
	es_auth_free(a);
}
END_TEST

START_TEST(nbf_and_iat_in_the_future_beyond_the_leeway_are_refused)
{
	struct es_auth *a = auth();
	json_t *c = claims();
	char *nbf_far, *nbf_near, *iat_far, *iat_near;

	json_object_set_new(c, "nbf", json_integer(NOW + LEEWAY + 1));
	nbf_far = mint_with(c);
	c = claims();
	json_object_set_new(c, "nbf", json_integer(NOW + LEEWAY));
	nbf_near = mint_with(c);
	c = claims();
	json_object_set_new(c, "iat", json_integer(NOW + LEEWAY + 1));
	iat_far = mint_with(c);
	c = claims();
	json_object_set_new(c, "iat", json_integer(NOW + LEEWAY));
	iat_near = mint_with(c);

	refused(a, nbf_far, NOW, "token is not valid yet");
	accepted(a, nbf_near, NOW);
	refused(a, iat_far, NOW, "token is issued in the future");
	accepted(a, iat_near, NOW);
	/* Later, the same tokens are good. */
	accepted(a, nbf_far, NOW + 1);
	accepted(a, iat_far, NOW + 1);
	free(nbf_far);
	free(nbf_near);
	free(iat_far);
	free(iat_near);
	es_auth_free(a);
}
END_TEST

START_TEST(a_cached_token_is_not_good_before_its_nbf)
{
	struct es_auth *a = auth();
	json_t *c = claims();
	char *tok;

	json_object_set_new(c, "nbf", json_integer(NOW + 100));
	tok = mint_with(c);
	accepted(a, tok, NOW + 100); /* cached now */
	refused(a, tok, NOW + 100 - LEEWAY - 1, "token is not valid yet");
	free(tok);
	es_auth_free(a);
}
END_TEST

START_TEST(the_issuer_must_be_the_configured_one)
{
	struct es_auth *a = auth();
	json_t *c = claims();
	char *other, *none, *prefix;

	json_object_set_new(c, "iss", json_string("https://evil.test"));
	other = mint_with(c);
	c = claims();
	json_object_del(c, "iss");
	none = mint_with(c);
	c = claims();
	json_object_set_new(c, "iss", json_string(ISS "/"));
	prefix = mint_with(c);
	refused(a, other, NOW, "token issuer is not accepted");
	refused(a, none, NOW, "token issuer is not accepted");
	refused(a, prefix, NOW, "token issuer is not accepted");
	free(other);
	free(none);
	free(prefix);
	es_auth_free(a);
}
END_TEST

START_TEST(the_audience_is_a_string_or_an_array_containing_ours)
{
	struct es_auth *a = auth();
	json_t *c;
	char *t[5];

	c = claims();
	json_object_set_new(c, "aud", json_pack("[s, s]", "other", AUD));
	t[0] = mint_with(c);
	c = claims();
	json_object_set_new(c, "aud", json_pack("[s, s]", "other", "more"));
	t[1] = mint_with(c);
	c = claims();
	json_object_set_new(c, "aud", json_string("other"));
	t[2] = mint_with(c);
	c = claims();
	json_object_del(c, "aud");
	t[3] = mint_with(c);
	c = claims();
	json_object_set_new(c, "aud", json_pack("[i, s]", 1, "tandemx"));
	t[4] = mint_with(c);

	accepted(a, t[0], NOW);
	refused(a, t[1], NOW, "token audience is not accepted");
	refused(a, t[2], NOW, "token audience is not accepted");
	refused(a, t[3], NOW, "token audience is not accepted");
	refused(a, t[4], NOW, "token audience is not accepted");
	for (int i = 0; i < 5; i++)
		free(t[i]);
	es_auth_free(a);
}
END_TEST

START_TEST(sub_must_be_a_non_empty_string)
{
	struct es_auth *a = auth();
	json_t *bad[5];
	char long_sub[ES_AUTH_SUB_MAX + 1];

	memset(long_sub, 'x', ES_AUTH_SUB_MAX);
	long_sub[ES_AUTH_SUB_MAX] = '\0';
	bad[0] = json_null(); /* removed below */
	bad[1] = json_string("");
	bad[2] = json_integer(42);
	bad[3] = json_string(long_sub);
	bad[4] = json_string("ali\nce");
	for (int i = 0; i < 5; i++) {
		json_t *c = claims();
		char *tok;

		if (i == 0)
			json_object_del(c, "sub");
		else
			json_object_set(c, "sub", bad[i]);
		tok = mint_with(c);
		refused(a, tok, NOW, "token sub is missing");
		free(tok);
		json_decref(bad[i]);
	}
	es_auth_free(a);
}
END_TEST

START_TEST(roles_come_from_the_configured_claim)
{
	struct es_auth_config cfg;
	struct es_auth *a = auth(), *realm;
	struct es_error err = ES_ERROR_INIT;
	struct es_principal p;
	json_t *c;
	char *t_default, *t_realm, *t_none, *t_unknown;

	c = claims();
	json_object_del(c, "roles");
	json_object_set_new(
		c, "realm_access",
		json_pack("{s:[s, s]}", "roles", "manager", "operator"));
	t_realm = mint_with(c);
	t_default = mint_with(claims());
	c = claims();
	json_object_del(c, "roles");
	t_none = mint_with(c);
	c = claims();
	json_object_set_new(
		c, "roles",
		json_pack("[s, s, s]", "admin", "Holder", "service"));
	t_unknown = mint_with(c);

	ck_assert_int_eq(verify_at(a, t_default, NOW, &p, &err), 0);
	ck_assert_uint_eq(p.roles, ES_ROLE_HOLDER | ES_ROLE_AUDITOR);
	ck_assert_int_eq(verify_at(a, t_realm, NOW, &p, &err), 0);
	ck_assert_uint_eq(p.roles, 0); /* no "roles" member at the top */
	ck_assert_int_eq(verify_at(a, t_none, NOW, &p, &err), 0);
	ck_assert_uint_eq(p.roles, 0);
	ck_assert_int_eq(verify_at(a, t_unknown, NOW, &p, &err), 0);
	ck_assert_uint_eq(p.roles, ES_ROLE_SERVICE);

	cfg = config("set.json");
	cfg.roles_claim = "realm_access.roles";
	realm = auth_cfg(&cfg);
	ck_assert_int_eq(verify_at(realm, t_realm, NOW, &p, &err), 0);
	ck_assert_uint_eq(p.roles, ES_ROLE_MANAGER | ES_ROLE_OPERATOR);
	ck_assert_int_eq(verify_at(realm, t_default, NOW, &p, &err), 0);
	ck_assert_uint_eq(p.roles, 0);
	for (int r = 1; r <= 16; r <<= 1)
		ck_assert_uint_eq(es_role_parse(es_role_name((unsigned)r)),
				  (unsigned)r);
	ck_assert_ptr_null(es_role_name(3));
	ck_assert_uint_eq(es_role_parse("admin"), 0);
	free(t_default);
	free(t_realm);
	free(t_none);
	free(t_unknown);
	es_auth_free(a);
	es_auth_free(realm);
}
END_TEST

START_TEST(roles_that_are_not_an_array_of_strings_are_refused)
{
	struct es_auth_config cfg = config("set.json");
	struct es_auth *a = auth(), *realm;
	json_t *bad[3];
	char *t_flat;
	json_t *c;

	bad[0] = json_string("holder");
	bad[1] = json_pack("{s:b}", "holder", 1);
	bad[2] = json_pack("[s, i]", "holder", 7);
	for (int i = 0; i < 3; i++) {
		char *tok;

		c = claims();
		json_object_set_new(c, "roles", bad[i]);
		tok = mint_with(c);
		refused(a, tok, NOW, "roles claim is not an array of strings");
		free(tok);
	}
	cfg.roles_claim = "realm_access.roles";
	realm = auth_cfg(&cfg);
	c = claims();
	json_object_set_new(c, "realm_access", json_string("manager"));
	t_flat = mint_with(c);
	refused(realm, t_flat, NOW, "roles claim is not an array of strings");
	free(t_flat);
	es_auth_free(realm);
	es_auth_free(a);
}
END_TEST

START_TEST(malformed_tokens_are_refused)
{
	struct es_auth *a = auth();
	char *good = mint_with(claims());
	char *d1 = strchr(good, '.'), *d2 = strchr(d1 + 1, '.');
	char h[2048], p[2048], s[2048], buf[8192];
	char *t;

	snprintf(h, sizeof(h), "%.*s", (int)(d1 - good), good);
	snprintf(p, sizeof(p), "%.*s", (int)(d2 - d1 - 1), d1 + 1);
	snprintf(s, sizeof(s), "%s", d2 + 1);

	snprintf(buf, sizeof(buf), "%s.%s", h, p);
	refused(a, buf, NOW, "not three dot-separated parts");
	snprintf(buf, sizeof(buf), "%s.%s.%s.%s", h, p, s, s);
	refused(a, buf, NOW, "not three dot-separated parts");
	snprintf(buf, sizeof(buf), ".%s.%s", p, s);
	refused(a, buf, NOW, "an empty part");
	snprintf(buf, sizeof(buf), "%s..%s", h, s);
	refused(a, buf, NOW, "an empty part");
	snprintf(buf, sizeof(buf), "%s=.%s.%s", h, p, s); /* padding */
	refused(a, buf, NOW, "malformed token header");
	snprintf(buf, sizeof(buf), "%s.%s.%s=", h, p, s);
	refused(a, buf, NOW, "malformed token signature");
	snprintf(buf, sizeof(buf), "%s.%s.%s", h, p, s);
	buf[3] = '+'; /* base64, not base64url */
	refused(a, buf, NOW, "malformed token header");
	snprintf(buf, sizeof(buf), "%s.%s.%s", h, p, s);
	buf[strlen(h) + 5] = '/';
	refused(a, buf, NOW, "invalid token signature"); /* signed bytes */
	snprintf(buf, sizeof(buf), "%s.%s.%s x", h, p, s);
	refused(a, buf, NOW, "malformed token signature");

	/* Header: not JSON, not an object, duplicate members, crit, deep. */
	t = mint_raw("{\"alg\":\"RS256\",", "{}");
	refused(a, t, NOW, "malformed token header");
	free(t);
	t = mint_raw("[\"RS256\"]", "{}");
	refused(a, t, NOW, "malformed token header");
	free(t);
	t = mint_raw("\"RS256\"", "{}");
	refused(a, t, NOW, "malformed token header");
	free(t);
	t = mint_raw("{\"alg\":\"none\",\"kid\":\"r1\",\"alg\":\"RS256\"}",
		     "{}");
	refused(a, t, NOW, "malformed token header");
	free(t);
	t = mint_raw("{\"alg\":\"RS256\",\"kid\":\"r1\",\"crit\":[\"exp\"]}",
		     "{}");
	refused(a, t, NOW, "crit");
	free(t);
	t = mint_raw(
		"{\"alg\":\"RS256\",\"kid\":\"r1\",\"x\":[[[[[[[[[1]]]]]]]]]}",
		"{}");
	refused(a, t, NOW, "malformed token header");
	free(t);
	t = mint_raw("{\"kid\":\"r1\"}", "{}");
	refused(a, t, NOW, "token header has no alg");
	free(t);
	t = mint_raw("{\"alg\":\"RS256\",\"kid\":7}", "{}");
	refused(a, t, NOW, "kid is not a string");
	free(t);

	/* Payload (signed): not JSON, duplicate members (two subs). */
	t = mint_raw("{\"alg\":\"RS256\",\"kid\":\"r1\"}", "not json");
	refused(a, t, NOW, "malformed token payload");
	free(t);
	t = mint_raw(
		"{\"alg\":\"RS256\",\"kid\":\"r1\"}",
		"{\"iss\":\"" ISS "\",\"aud\":\"" AUD
		"\",\"exp\":1700000300,\"sub\":\"alice\",\"sub\":\"bob\"}");
	refused(a, t, NOW, "malformed token payload");
	free(t);
	/* The same without the duplicate passes: the test above can fail. */
	t = mint_raw("{\"alg\":\"RS256\",\"kid\":\"r1\"}",
		     "{\"iss\":\"" ISS "\",\"aud\":\"" AUD
		     "\",\"exp\":1700000300,\"sub\":\"alice\"}");
	accepted(a, t, NOW);
	free(t);
	free(good);
	es_auth_free(a);
}
END_TEST

START_TEST(a_huge_token_is_refused_before_any_work)
{
	struct es_auth *a = auth();
	struct es_auth_stats st;
	json_t *c = claims();
	char pad[ES_AUTH_TOKEN_MAX];
	char *tok;

	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	json_object_set_new(c, "pad", json_string(pad));
	tok = mint_with(c);
	ck_assert_uint_gt(strlen(tok), ES_AUTH_TOKEN_MAX);
	refused(a, tok, NOW, "token is too long");
	es_auth_stats(a, &st);
	ck_assert_uint_eq(st.cache_misses, 0); /* not even looked up */
	ck_assert_uint_eq(st.refused, 1);
	free(tok);
	es_auth_free(a);
}
END_TEST

START_TEST(tampered_tokens_are_refused)
{
	struct es_auth *a = auth();
	char *t1 = mint_with(claims());
	json_t *c = claims();
	char *t2, *forged, *sig1, *d;

	json_object_set_new(c, "sub", json_string("mallory"));
	t2 = mint_with(c);
	/* t2's header and payload with t1's signature. */
	sig1 = strrchr(t1, '.');
	d = strrchr(t2, '.');
	*d = '\0';
	forged = malloc(strlen(t2) + strlen(sig1) + 1);
	sprintf(forged, "%s%s", t2, sig1);
	refused(a, forged, NOW, "invalid token signature");
	/* One changed character in t1's signature. */
	sig1[1] = sig1[1] == 'A' ? 'B' : 'A';
	refused(a, t1, NOW, "invalid token signature");
	free(forged);
	free(t1);
	free(t2);
	es_auth_free(a);
}
END_TEST

/* "<head>.<sig + one zero byte>": the base64url `sig` decoded, a byte
 * added, encoded again. */
static char *sig_plus_one(const char *head, const char *sig)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char raw[512];
	size_t n = 0;
	uint32_t acc = 0;
	int bits = 0;
	char *enc, *tok;

	for (const char *c = sig; *c; c++) {
		acc = acc << 6 | (uint32_t)(strchr(abc, *c) - abc);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			raw[n++] = (unsigned char)(acc >> bits);
		}
	}
	raw[n++] = 0;
	enc = es_mint_b64url(raw, n);
	tok = malloc(strlen(head) + strlen(enc) + 2);
	sprintf(tok, "%s.%s", head, enc);
	free(enc);
	return tok;
}

START_TEST(an_es256_signature_of_the_wrong_length_is_refused)
{
	struct es_auth *a = auth();
	const char *header = "{\"alg\":\"ES256\",\"kid\":\"e1\"}";
	json_t *c = claims();
	char *payload = json_dumps(c, JSON_COMPACT);
	/* The RSA key's 256-byte signature under an ES256 header. */
	char *rs = es_mint_sign("RS256", rsa1, NULL, 0, header, strlen(header),
				payload, strlen(payload), NULL);
	char *es = es_mint_sign("ES256", ec1, NULL, 0, header, strlen(header),
				payload, strlen(payload), NULL);
	unsigned char sig63[63] = { 1 };
	char *s63 = es_mint_b64url(sig63, sizeof(sig63));
	char *t63;

	char *ec_sig;

	ck_assert_ptr_nonnull(rs);
	ck_assert_ptr_nonnull(es);
	accepted(a, es, NOW);
	ec_sig = strdup(strrchr(es, '.') + 1);
	refused(a, rs, NOW, "invalid token signature");
	*strrchr(es, '.') = '\0';
	t63 = malloc(strlen(es) + strlen(s63) + 2);
	sprintf(t63, "%s.%s", es, s63);
	refused(a, t63, NOW, "invalid token signature");
	free(t63);
	/* The good r||s and one byte more: 65 bytes. */
	t63 = sig_plus_one(es, ec_sig);
	refused(a, t63, NOW, "invalid token signature");
	free(t63);
	free(ec_sig);
	free(s63);
	free(rs);
	free(es);
	free(payload);
	json_decref(c);
	es_auth_free(a);
}
END_TEST

/* es_auth_new() on the key file text `text`: NULL expected, with `want`. */
static void file_refused(const char *text, const char *want)
{
	struct es_auth_config c = config("bad.json");
	struct es_error err = ES_ERROR_INIT;

	write_text("bad.json", text);
	ck_assert_ptr_null(es_auth_new(&c, &err));
	ck_assert_int_eq(err.code, ES_EINVALID);
	ck_assert_msg(strstr(err.detail, want) != NULL,
		      "detail '%s' lacks '%s'", err.detail, want);
}

START_TEST(a_1024_bit_rsa_key_is_refused)
{
	json_t *jwk = es_mint_jwk(rsa1024, "small", NULL);
	json_t *set = json_pack("{s:[O]}", "keys", jwk);
	char *text = json_dumps(set, 0);

	file_refused(text, "RSA key of 1024 bits, 2048 to 16384 accepted");
	free(text);
	json_decref(set);
	json_decref(jwk);
}
END_TEST

START_TEST(bad_key_files_are_refused_with_a_reason)
{
	json_t *jwk = es_mint_jwk(rsa1, "r1", NULL);
	json_t *ec = es_mint_jwk(ec1, "e1", NULL);
	struct es_auth_config c = config("absent.json");
	struct es_error err = ES_ERROR_INIT;
	json_t *set;
	char *text;

	ck_assert_ptr_null(es_auth_new(&c, &err));
	ck_assert_ptr_nonnull(strstr(err.detail, "cannot read AUTH_JWKS_FILE"));
	file_refused("{\"keys\": [", "is not valid JSON");
	file_refused("[]", "is not a JWK Set");
	file_refused("{\"keys\": []}", "has no RS256 or ES256 signing key");
	file_refused("{\"keys\": [{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}",
		     "has no RS256 or ES256 signing key");
	file_refused("{\"keys\": [{\"kty\":\"RSA\",\"n\":\"AQAB\"}]}",
		     "n and e must be base64url strings");
	file_refused("{\"keys\": [{\"kty\":\"EC\",\"crv\":\"P-256\","
		     "\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\","
		     "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}",
		     "not a valid P-256 public key");

	/* Two keys of one kid. */
	set = json_pack("{s:[O, O]}", "keys", jwk, jwk);
	text = json_dumps(set, 0);
	file_refused(text, "two keys have kid 'r1'");
	free(text);
	json_decref(set);
	/* A private part: d. */
	set = json_pack("{s:[o]}", "keys", json_deep_copy(ec));
	json_object_set_new(json_array_get(json_object_get(set, "keys"), 0),
			    "d", json_string("AAAA"));
	text = json_dumps(set, 0);
	file_refused(text, "holds private parts");
	free(text);
	json_decref(set);
	/* alg RS256 on an EC key. */
	set = json_pack("{s:[o]}", "keys", json_deep_copy(ec));
	json_object_set_new(json_array_get(json_object_get(set, "keys"), 0),
			    "alg", json_string("RS256"));
	text = json_dumps(set, 0);
	file_refused(text, "alg RS256 on an EC key");
	free(text);
	json_decref(set);
	json_decref(jwk);
	json_decref(ec);
}
END_TEST

START_TEST(keys_not_for_us_are_skipped)
{
	json_t *jwk = es_mint_jwk(rsa1, "r1", NULL);
	json_t *enc = es_mint_jwk(rsa2, "enc", NULL);
	json_t *ps = es_mint_jwk(rsa2, "ps", NULL);
	json_t *set;
	struct es_auth_config c = config("skip.json");
	struct es_auth_stats st;
	struct es_auth *a;
	char *text, *tok;

	json_object_set_new(enc, "use", json_string("enc"));
	json_object_set_new(ps, "alg", json_string("PS256"));
	set = json_pack("{s:[O, O, O, {s:s, s:s}]}", "keys", jwk, enc, ps,
			"kty", "oct", "k", "c2VjcmV0");
	text = json_dumps(set, 0);
	write_text("skip.json", text);
	a = auth_cfg(&c);
	es_auth_stats(a, &st);
	ck_assert_uint_eq(st.keys, 1);
	tok = mint(rsa2, "RS256", "enc", claims());
	refused(a, tok, NOW, "unknown key id");
	free(tok);
	tok = mint_with(claims());
	accepted(a, tok, NOW);
	free(tok);
	free(text);
	json_decref(set);
	json_decref(jwk);
	json_decref(enc);
	json_decref(ps);
	es_auth_free(a);
}
END_TEST

START_TEST(the_configuration_is_checked)
{
	struct es_auth_config c = config("set.json");
	struct es_error err = ES_ERROR_INIT;
	struct es_principal p;
	struct es_auth *a;

	write_set("set.json", rsa1, "r1", ec1, "e1", NULL, NULL);
	c.mode = "maybe";
	ck_assert_ptr_null(es_auth_new(&c, &err));
	ck_assert_str_eq(err.detail, "'AUTH' must be jwt or off, got 'maybe'");
	es_error_release(&err);
	c = config("set.json");
	c.issuer = "";
	ck_assert_ptr_null(es_auth_new(&c, &err));
	ck_assert_ptr_nonnull(strstr(err.detail, "'AUTH_ISSUER' is required"));
	es_error_release(&err);
	c = config("set.json");
	c.audience = NULL;
	ck_assert_ptr_null(es_auth_new(&c, &err));
	ck_assert_ptr_nonnull(strstr(err.detail, "'AUTH_AUDIENCE'"));
	es_error_release(&err);
	c = config("set.json");
	c.jwks_file = "";
	ck_assert_ptr_null(es_auth_new(&c, &err));
	ck_assert_ptr_nonnull(strstr(err.detail, "'AUTH_JWKS_FILE'"));
	es_error_release(&err);
	c = config("set.json");
	c.roles_claim = "realm_access..roles";
	ck_assert_ptr_null(es_auth_new(&c, &err));
	ck_assert_ptr_nonnull(strstr(err.detail, "'AUTH_ROLES_CLAIM'"));
	es_error_release(&err);

	/* Off: nothing needed, nothing verified. */
	c = (struct es_auth_config){ .mode = "off" };
	a = es_auth_new(&c, &err);
	ck_assert_ptr_nonnull(a);
	ck_assert(es_auth_off(a));
	ck_assert_int_eq(es_auth_verify(a, "Bearer x.y.z", NOW, &p, &err), -1);
	ck_assert_int_eq(err.code, ES_EINTERNAL);
	ck_assert_int_eq(es_auth_reload(a, NULL), 0);
	es_auth_free(a);
	a = auth();
	ck_assert(!es_auth_off(a));
	es_auth_free(a);
}
END_TEST

START_TEST(a_verified_token_is_served_from_the_cache)
{
	struct es_auth *a = auth();
	char *tok = mint_with(claims());
	struct es_auth_stats st;

	accepted(a, tok, NOW);
	es_auth_stats(a, &st);
	ck_assert_uint_eq(st.cache_hits, 0);
	ck_assert_uint_eq(st.cache_misses, 1);
	ck_assert_uint_eq(st.verified, 1);
	ck_assert_uint_eq(st.cache_entries, 1);
	accepted(a, tok, NOW + 10);
	accepted(a, tok, NOW + 20);
	es_auth_stats(a, &st);
	ck_assert_uint_eq(st.cache_hits, 2);
	ck_assert_uint_eq(st.verified, 1);
	/* Expired while cached. */
	refused(a, tok, NOW + 300 + LEEWAY, "token has expired");
	es_auth_stats(a, &st);
	ck_assert_uint_eq(st.verified, 1); /* answered by the cache */
	ck_assert_uint_eq(st.refused, 1);
	free(tok);
	es_auth_free(a);
}
END_TEST

START_TEST(a_threads_last_token_belongs_to_its_verifier_and_keys)
{
	struct es_auth_config c;
	struct es_auth *a = auth(), *other;
	char *tok = mint_with(claims());
	struct es_auth_stats st;

	/* the memo of `a` never answers for a verifier of another issuer */
	c = config("set.json");
	c.issuer = "https://elsewhere.test";
	other = auth_cfg(&c);
	accepted(a, tok, NOW);
	refused(other, tok, NOW, "token issuer is not accepted");
	accepted(a, tok, NOW + 1);
	es_auth_stats(a, &st);
	ck_assert_uint_eq(st.cache_hits, 1);
	ck_assert_uint_eq(st.verified, 1);
	/* nor past the token's exp, nor after a reload */
	refused(a, tok, NOW + 300 + LEEWAY, "token has expired");
	ck_assert_int_eq(es_auth_reload(a, NULL), 0);
	accepted(a, tok, NOW + 2);
	es_auth_stats(a, &st);
	ck_assert_uint_eq(st.verified, 2);
	free(tok);
	es_auth_free(other);
	es_auth_free(a);
}
END_TEST

START_TEST(the_cache_is_bounded)
{
	struct es_auth_config c = config("set.json");
	struct es_auth_stats st;
	struct es_auth *a;
	char *first = NULL;

	write_set("set.json", rsa1, "r1", ec1, "e1", NULL, NULL);
	c.cache_max = 8;
	a = auth_cfg(&c);
	for (int i = 0; i < 60; i++) {
		json_t *cl = claims();
		char sub[32], *tok;

		snprintf(sub, sizeof(sub), "user-%d", i);
		json_object_set_new(cl, "sub", json_string(sub));
		tok = mint(ec1, "ES256", "e1", cl);
		accepted(a, tok, NOW);
		if (i == 0)
			first = tok;
		else
			free(tok);
	}
	es_auth_stats(a, &st);
	ck_assert_uint_eq(st.cache_max, 8);
	ck_assert_uint_le(st.cache_entries, 8);
	ck_assert_uint_ge(st.cache_entries, 2);
	ck_assert_uint_eq(st.verified, 60);
	free(first);
	es_auth_free(a);

	/* cache_max 0: no cache at all. */
	c.cache_max = 0;
	a = auth_cfg(&c);
	first = mint_with(claims());
	accepted(a, first, NOW);
	accepted(a, first, NOW);
	es_auth_stats(a, &st);
	ck_assert_uint_eq(st.cache_hits, 0);
	ck_assert_uint_eq(st.verified, 2);
	free(first);
	es_auth_free(a);
}
END_TEST

START_TEST(a_reload_replaces_the_keys_and_the_cache)
{
	struct es_auth_config c = config("rot.json");
	struct es_error err = ES_ERROR_INIT;
	struct es_auth_stats st;
	struct es_auth *a;
	char *old, *new;

	write_set("rot.json", rsa1, "r1", NULL, NULL, NULL, NULL);
	a = auth_cfg(&c);
	old = mint(rsa1, "RS256", "r1", claims());
	new = mint(rsa2, "RS256", "r2", claims());
	accepted(a, old, NOW); /* and cached */
	refused(a, new, NOW, "unknown key id");

	/* Rotation, step 1: both keys. */
	write_set("rot.json", rsa1, "r1", rsa2, "r2", NULL, NULL);
	ck_assert_int_eq(es_auth_reload(a, &err), 0);
	accepted(a, old, NOW);
	accepted(a, new, NOW);
	/* Step 2: the old key removed; its cached token goes too. */
	write_set("rot.json", rsa2, "r2", NULL, NULL, NULL, NULL);
	ck_assert_int_eq(es_auth_reload(a, &err), 0);
	refused(a, old, NOW, "unknown key id");
	accepted(a, new, NOW);
	es_auth_stats(a, &st);
	ck_assert_uint_eq(st.reloads, 2);
	ck_assert_uint_eq(st.keys, 1);

	/* A failed reload keeps the keys there were. */
	write_text("rot.json", "{\"keys\": [}");
	ck_assert_int_eq(es_auth_reload(a, &err), -1);
	ck_assert_int_eq(err.code, ES_EINVALID);
	es_error_release(&err);
	accepted(a, new, NOW);
	unlink(path_of("rot.json"));
	ck_assert_int_eq(es_auth_reload(a, &err), -1);
	es_error_release(&err);
	accepted(a, new, NOW + 1);
	refused(a, old, NOW, "unknown key id");
	free(old);
	free(new);
	es_auth_free(a);
}
END_TEST

struct worker {
	struct es_auth *a;
	char *tokens[4];
	int failures;
};

static void *verify_loop(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 400; i++) {
		struct es_error err = ES_ERROR_INIT;
		struct es_principal p;

		if (verify_at(w->a, w->tokens[i % 4], NOW + i % 7, &p, &err) !=
			    0 ||
		    strncmp(p.sub, "user-", 5) != 0)
			w->failures++;
	}
	return NULL;
}

START_TEST(verifies_and_reloads_run_together)
{
	struct es_auth_config c = config("conc.json");
	struct worker w[4];
	pthread_t th[4];
	struct es_auth *a;

	write_set("conc.json", rsa1, "r1", ec1, "e1", NULL, NULL);
	c.cache_max = 4; /* evictions too */
	a = auth_cfg(&c);
	for (int t = 0; t < 4; t++) {
		w[t].a = a;
		w[t].failures = 0;
		for (int i = 0; i < 4; i++) {
			json_t *cl = claims();
			char sub[32];

			snprintf(sub, sizeof(sub), "user-%d-%d", t, i);
			json_object_set_new(cl, "sub", json_string(sub));
			w[t].tokens[i] = i % 2 ? mint(ec1, "ES256", "e1", cl)
					       : mint(rsa1, "RS256", "r1", cl);
		}
	}
	for (int t = 0; t < 4; t++)
		ck_assert_int_eq(
			pthread_create(&th[t], NULL, verify_loop, &w[t]), 0);
	for (int r = 0; r < 40; r++) {
		struct es_error err = ES_ERROR_INIT;

		/* Both sets hold r1 and e1. */
		if (r % 2)
			write_set("conc.json", ec1, "e1", rsa1, "r1", rsa2,
				  "r2");
		else
			write_set("conc.json", rsa1, "r1", ec1, "e1", NULL,
				  NULL);
		ck_assert_int_eq(es_auth_reload(a, &err), 0);
	}
	for (int t = 0; t < 4; t++) {
		ck_assert_int_eq(pthread_join(th[t], NULL), 0);
		ck_assert_int_eq(w[t].failures, 0);
		for (int i = 0; i < 4; i++)
			free(w[t].tokens[i]);
	}
	es_auth_free(a);
}
END_TEST

START_TEST(the_tool_signs_what_the_verifier_takes)
{
	/* es_mint_jwk() round trip through a file, for both algorithms,
	 * without kid. */
	struct es_auth_config c = config("nokid.json");
	struct es_auth *a;
	json_t *jwk = es_mint_jwk(ec1, NULL, NULL);
	json_t *set = json_pack("{s:[O]}", "keys", jwk);
	char *text = json_dumps(set, 0), *tok;

	ck_assert_ptr_null(json_object_get(jwk, "kid"));
	ck_assert_str_eq(json_string_value(json_object_get(jwk, "crv")),
			 "P-256");
	write_text("nokid.json", text);
	a = auth_cfg(&c);
	tok = mint(ec1, "ES256", NULL, claims());
	accepted(a, tok, NOW);
	free(tok);
	tok = mint(ec1, "ES256", "e1", claims()); /* names a kid none has */
	refused(a, tok, NOW, "unknown key id");
	free(tok);
	ck_assert_str_eq(es_mint_alg_of(rsa1), "RS256");
	ck_assert_str_eq(es_mint_alg_of(ec1), "ES256");
	free(text);
	json_decref(set);
	json_decref(jwk);
	es_auth_free(a);
}
END_TEST

static Suite *auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("verify");
	TCase *keys = tcase_create("keys");
	TCase *cache = tcase_create("cache");

	tcase_add_test(tc, a_good_rs256_token_gives_its_principal);
	tcase_add_test(tc, a_good_es256_token_gives_its_principal);
	tcase_add_test(tc, the_scheme_is_bearer_in_any_case);
	tcase_add_test(tc, alg_none_is_refused);
	tcase_add_test(tc, hs256_signed_with_the_public_key_is_refused);
	tcase_add_test(tc, an_alg_other_than_the_keys_is_refused);
	tcase_add_test(tc, an_unknown_kid_is_refused_and_not_repeated);
	tcase_add_test(tc, a_token_without_kid_needs_a_set_of_one_key);
	tcase_add_test(tc, exp_is_required_and_checked_with_the_leeway);
	tcase_add_test(tc,
		       nbf_and_iat_in_the_future_beyond_the_leeway_are_refused);
	tcase_add_test(tc, a_cached_token_is_not_good_before_its_nbf);
	tcase_add_test(tc, the_issuer_must_be_the_configured_one);
	tcase_add_test(tc,
		       the_audience_is_a_string_or_an_array_containing_ours);
	tcase_add_test(tc, sub_must_be_a_non_empty_string);
	tcase_add_test(tc, roles_come_from_the_configured_claim);
	tcase_add_test(tc, roles_that_are_not_an_array_of_strings_are_refused);
	tcase_add_test(tc, malformed_tokens_are_refused);
	tcase_add_test(tc, a_huge_token_is_refused_before_any_work);
	tcase_add_test(tc, tampered_tokens_are_refused);
	tcase_add_test(tc, an_es256_signature_of_the_wrong_length_is_refused);
	suite_add_tcase(s, tc);

	tcase_add_test(keys, a_1024_bit_rsa_key_is_refused);
	tcase_add_test(keys, bad_key_files_are_refused_with_a_reason);
	tcase_add_test(keys, keys_not_for_us_are_skipped);
	tcase_add_test(keys, the_configuration_is_checked);
	tcase_add_test(keys, the_tool_signs_what_the_verifier_takes);
	suite_add_tcase(s, keys);

	tcase_add_test(cache, a_verified_token_is_served_from_the_cache);
	tcase_add_test(cache,
		       a_threads_last_token_belongs_to_its_verifier_and_keys);
	tcase_add_test(cache, the_cache_is_bounded);
	tcase_add_test(cache, a_reload_replaces_the_keys_and_the_cache);
	tcase_add_test(cache, verifies_and_reloads_run_together);
	tcase_set_timeout(cache, 60);
	suite_add_tcase(s, cache);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed;
	char cmd[64];

	es_log_threshold = ES_LOG_OFF;
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	rsa1 = es_mint_keygen("RS256", 2048, NULL);
	rsa2 = es_mint_keygen("RS256", 2048, NULL);
	rsa1024 = es_mint_keygen("RS256", 1024, NULL);
	ec1 = es_mint_keygen("ES256", 0, NULL);
	if (!rsa1 || !rsa2 || !rsa1024 || !ec1) {
		fprintf(stderr, "check_auth: cannot make keys\n");
		return EXIT_FAILURE;
	}
	sr = srunner_create(auth_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	EVP_PKEY_free(rsa1);
	EVP_PKEY_free(rsa2);
	EVP_PKEY_free(rsa1024);
	EVP_PKEY_free(ec1);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		failed++;
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
