/* es_auth_mint.c - key pairs, public JWKs and tokens (see es_auth_mint.h). */
#include "es_auth_mint.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *es_mint_b64url(const void *buf, size_t len)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *b = buf;
	char *out = malloc(len / 3 * 4 + 4 + 1), *o = out;
	size_t i;

	if (!out)
		return NULL;
	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 |
			     b[i + 2];

		*o++ = abc[v >> 18];
		*o++ = abc[(v >> 12) & 63];
		*o++ = abc[(v >> 6) & 63];
		*o++ = abc[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)b[i] << 16;

		*o++ = abc[v >> 18];
		*o++ = abc[(v >> 12) & 63];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8;

		*o++ = abc[v >> 18];
		*o++ = abc[(v >> 12) & 63];
		*o++ = abc[(v >> 6) & 63];
	}
	*o = '\0';
	return out;
}

EVP_PKEY *es_mint_keygen(const char *alg, int rsa_bits, struct es_error *err)
{
	EVP_PKEY *key = NULL;

	if (alg && strcmp(alg, "RS256") == 0) {
		if (rsa_bits == 0)
			rsa_bits = 2048;
		if (rsa_bits < 1024 || rsa_bits > 16384) {
			es_error_set(err, ES_EINVALID,
				     "RSA keys have 1024 to 16384 bits");
			return NULL;
		}
		key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)rsa_bits);
	} else if (alg && strcmp(alg, "ES256") == 0) {
		key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	} else {
		es_error_set(err, ES_EINVALID, "alg must be RS256 or ES256");
		return NULL;
	}
	if (!key)
		es_error_set(err, ES_EINTERNAL, "cannot make a key pair");
	ERR_clear_error();
	return key;
}

const char *es_mint_alg_of(EVP_PKEY *key)
{
	char group[32];
	size_t len = 0;

	if (EVP_PKEY_is_a(key, "RSA"))
		return "RS256";
	if (EVP_PKEY_is_a(key, "EC") &&
	    EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME,
					   group, sizeof(group), &len) == 1 &&
	    (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0))
		return "ES256";
	ERR_clear_error();
	return NULL;
}

/* Set member `name` of `o` to the base64url of `bn` (`pad` bytes wide, or
 * its own width when 0). */
static int set_bn(json_t *o, const char *name, const BIGNUM *bn, int pad)
{
	int n = pad ? pad : BN_num_bytes(bn);
	unsigned char *b = malloc((size_t)n + 1);
	char *s = NULL;
	int ret = -1;

	if (!b)
		return -1;
	if (BN_bn2binpad(bn, b, n) != n)
		goto out;
	s = es_mint_b64url(b, (size_t)n);
	if (s && json_object_set_new(o, name, json_string(s)) == 0)
		ret = 0;
out:
	free(s);
	free(b);
	return ret;
}

json_t *es_mint_jwk(EVP_PKEY *key, const char *kid, struct es_error *err)
{
	const char *alg = es_mint_alg_of(key);
	BIGNUM *a = NULL, *b = NULL;
	json_t *jwk;
	int ok;

	if (!alg) {
		es_error_set(err, ES_EINVALID,
			     "the key is neither RSA nor P-256");
		return NULL;
	}
	jwk = json_pack("{s:s, s:s, s:s}", "kty",
			strcmp(alg, "RS256") == 0 ? "RSA" : "EC", "alg", alg,
			"use", "sig");
	if (!jwk)
		goto fail;
	if (kid && json_object_set_new(jwk, "kid", json_string(kid)) < 0)
		goto fail;
	if (strcmp(alg, "RS256") == 0)
		ok = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &a) ==
			     1 &&
		     EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &b) ==
			     1 &&
		     set_bn(jwk, "n", a, 0) == 0 && set_bn(jwk, "e", b, 0) == 0;
	else
		ok = json_object_set_new(jwk, "crv", json_string("P-256")) ==
			     0 &&
		     EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &a) ==
			     1 &&
		     EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &b) ==
			     1 &&
		     set_bn(jwk, "x", a, 32) == 0 &&
		     set_bn(jwk, "y", b, 32) == 0;
	BN_free(a);
	BN_free(b);
	if (ok)
		return jwk;
fail:
	ERR_clear_error();
	json_decref(jwk);
	es_error_set(err, ES_EINTERNAL, "cannot export the public key");
	return NULL;
}

/* The signature of `msg`: DER for ES256 turned into JOSE r||s. */
static unsigned char *sign_bytes(const char *alg, EVP_PKEY *key,
				 const void *secret, size_t secret_len,
				 const unsigned char *msg, size_t mlen,
				 size_t *slen, struct es_error *err)
{
	unsigned char *sig = NULL;
	EVP_MD_CTX *ctx = NULL;
	ECDSA_SIG *es = NULL;
	size_t len = 0;

	*slen = 0;
	if (strcmp(alg, "none") == 0)
		return calloc(1, 1);
	if (strcmp(alg, "HS256") == 0) {
		sig = malloc(EVP_MAX_MD_SIZE);
		if (!sig || !EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL,
				       secret, secret_len, msg, mlen, sig,
				       EVP_MAX_MD_SIZE, slen))
			goto fail;
		return sig;
	}
	if ((strcmp(alg, "RS256") != 0 && strcmp(alg, "ES256") != 0) || !key) {
		es_error_set(
			err, ES_EINVALID,
			"alg must be RS256, ES256 (with a key), HS256 or none");
		return NULL;
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx ||
	    EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, key, NULL) !=
		    1 ||
	    EVP_DigestSign(ctx, NULL, &len, msg, mlen) != 1)
		goto fail;
	sig = malloc(len < 64 ? 64 : len); /* room for r||s below */
	if (!sig || EVP_DigestSign(ctx, sig, &len, msg, mlen) != 1)
		goto fail;
	EVP_MD_CTX_free(ctx);
	ctx = NULL;
	if (strcmp(alg, "ES256") == 0) {
		const unsigned char *p = sig;
		const BIGNUM *r, *s;

		es = d2i_ECDSA_SIG(NULL, &p, (long)len);
		if (!es)
			goto fail;
		ECDSA_SIG_get0(es, &r, &s);
		if (BN_bn2binpad(r, sig, 32) != 32 ||
		    BN_bn2binpad(s, sig + 32, 32) != 32)
			goto fail;
		ECDSA_SIG_free(es);
		len = 64;
	}
	*slen = len;
	return sig;
fail:
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(ctx);
	free(sig);
	ERR_clear_error();
	es_error_set(err, ES_EINTERNAL, "cannot sign with %s", alg);
	return NULL;
}

char *es_mint_sign(const char *alg, EVP_PKEY *key, const void *secret,
		   size_t secret_len, const char *header, size_t header_len,
		   const char *payload, size_t payload_len,
		   struct es_error *err)
{
	char *h = es_mint_b64url(header, header_len);
	char *p = es_mint_b64url(payload, payload_len);
	char *input = NULL, *s = NULL, *tok = NULL;
	unsigned char *sig = NULL;
	size_t slen, ilen;

	if (!h || !p) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	ilen = strlen(h) + 1 + strlen(p);
	input = malloc(ilen + 1);
	if (!input) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	snprintf(input, ilen + 1, "%s.%s", h, p);
	sig = sign_bytes(alg ? alg : "", key, secret, secret_len,
			 (const unsigned char *)input, ilen, &slen, err);
	if (!sig)
		goto out;
	s = es_mint_b64url(sig, slen);
	tok = s ? malloc(ilen + 1 + strlen(s) + 1) : NULL;
	if (!tok) {
		es_error_set(err, ES_EINTERNAL, "out of memory");
		goto out;
	}
	sprintf(tok, "%s.%s", input, s);
out:
	free(h);
	free(p);
	free(input);
	free(sig);
	free(s);
	return tok;
}

char *es_mint_sign_json(const char *alg, EVP_PKEY *key, const void *secret,
			size_t secret_len, const json_t *header,
			const json_t *payload, struct es_error *err)
{
	char *h = json_dumps(header, JSON_COMPACT | JSON_SORT_KEYS);
	char *p = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
	char *tok = NULL;

	if (h && p)
		tok = es_mint_sign(alg, key, secret, secret_len, h, strlen(h),
				   p, strlen(p), err);
	else
		es_error_set(err, ES_EINTERNAL, "cannot encode the token");
	free(h);
	free(p);
	return tok;
}
