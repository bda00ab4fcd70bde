/*
 * tandem-token.c - bin/tandem-token: signing keys and bearer tokens for
 * Tandem's services (es_auth.h), for development, make run and the tests.
 *
 *   keygen  a key pair: the private key as PEM (mode 0600) and the public
 *           key as a JWK Set, new or with the key added (--append, for a
 *           rotation; the file is replaced atomically)
 *   drop    remove the key of a kid from a JWK Set (end of a rotation)
 *   mint    a signed token for any sub, roles, lifetime, iss, aud, kid;
 *           plus switches that make bad tokens on purpose, for tests
 *
 * No token or key is ever printed but the one asked for.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "es_auth_mint.h"

#define PROG "tandem-token"

static const char usage_text[] =
	"usage:\n"
	"  " PROG
	" keygen --alg RS256|ES256 --kid KID --private OUT.pem --jwks OUT.json\n"
	"                    [--append] [--bits N]\n"
	"  " PROG " drop --jwks FILE --kid KID\n"
	"  " PROG
	" mint --key PRIVATE.pem [--kid KID] --sub SUB [--roles a,b]\n"
	"                  --iss ISS --aud AUD [--aud AUD ...] [--ttl SECONDS]\n"
	"                  [--nbf-in SECONDS] [--iat-in SECONDS] [--now EPOCH]\n"
	"                  [--roles-claim PATH] [--claim NAME=JSON ...]\n"
	"\n"
	"keygen writes a new key pair: the private key (PEM, mode 0600) and a JWK\n"
	"Set with its public key; --append adds the key to an existing set\n"
	"(rotation), which is replaced atomically. --bits: RSA size (2048).\n"
	"drop removes the key of KID from a JWK Set.\n"
	"mint prints a token signed with the private key (RS256 or ES256, from the\n"
	"key's type): iat now (+ --iat-in), exp now + --ttl (default 3600,\n"
	"negative for an expired token), nbf now + --nbf-in when given, roles as an\n"
	"array at --roles-claim (default roles; a dotted path nests objects).\n"
	"--claim sets any claim to a JSON value, last.\n"
	"\n"
	"Test-only switches that make bad tokens: --alg-none (unsigned),\n"
	"--hs256-public-pem (HS256 with the key's public PEM as HMAC secret),\n"
	"--hs256-secret-file FILE (HS256 with FILE's bytes as secret, e.g. the\n"
	"JWKS), --header-alg ALG (header alg other than the signing one),\n"
	"--no-sub, --no-exp, --no-iat, --tamper (the signature changed).\n";

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An error line on stderr; returns 1 (the exit status). */
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

static bool parse_long(const char *s, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	return s[0] && !*end && errno == 0;
}

/* Write `text` to `path` through a temporary file and rename(). */
static int write_atomic(const char *path, const char *text, mode_t mode)
{
	char tmp[4096];
	size_t len = strlen(text);
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >=
	    (int)sizeof(tmp))
		return fail("path too long: '%s'", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, mode);
	if (fd < 0)
		return fail("cannot write '%s'", tmp);
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return fail("cannot write '%s'", tmp);
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return fail("cannot rename to '%s'", path);
	}
	return 0;
}

static int write_jwks(const char *path, const json_t *set)
{
	char *text = json_dumps(set, JSON_INDENT(2));
	char *line;
	int r;

	if (!text)
		return fail("cannot encode '%s'", path);
	line = malloc(strlen(text) + 2);
	if (!line) {
		free(text);
		return fail("out of memory for '%s'", path);
	}
	sprintf(line, "%s\n", text);
	r = write_atomic(path, line, 0644);
	free(line);
	free(text);
	return r;
}

/* An existing JWK Set, checked to be {"keys": [...]}. */
static json_t *read_jwks(const char *path)
{
	json_error_t jerr;
	json_t *set = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);

	if (!set) {
		fail("cannot read the JWK Set '%s'", path);
		return NULL;
	}
	if (!json_is_array(json_object_get(set, "keys"))) {
		fail("'%s' is not a JWK Set ({\"keys\": [...]})", path);
		json_decref(set);
		return NULL;
	}
	return set;
}

static bool has_kid(const json_t *set, const char *kid, size_t *at)
{
	size_t i;
	json_t *k;

	json_array_foreach(json_object_get(set, "keys"), i, k)
	{
		const char *s = json_string_value(json_object_get(k, "kid"));

		if (s && strcmp(s, kid) == 0) {
			if (at)
				*at = i;
			return true;
		}
	}
	return false;
}

static int cmd_keygen(int argc, char **argv)
{
	const char *alg = NULL, *kid = NULL, *priv = NULL, *jwks = NULL;
	struct es_error err = ES_ERROR_INIT;
	bool append = false;
	long bits = 2048;
	EVP_PKEY *key = NULL;
	json_t *set = NULL, *jwk = NULL;
	FILE *f = NULL;
	int fd, ret = 1;

	for (int i = 0; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(o, "--append") == 0) {
			append = true;
			continue;
		}
		if (!v)
			return usage();
		i++;
		if (strcmp(o, "--alg") == 0)
			alg = v;
		else if (strcmp(o, "--kid") == 0)
			kid = v;
		else if (strcmp(o, "--private") == 0)
			priv = v;
		else if (strcmp(o, "--jwks") == 0)
			jwks = v;
		else if (strcmp(o, "--bits") == 0) {
			if (!parse_long(v, &bits) || bits < 1024 ||
			    bits > 16384)
				return fail(
					"--bits must be in [1024, 16384], got '%s'",
					v);
		} else
			return usage();
	}
	if (!alg || !kid || !*kid || !priv || !jwks)
		return usage();
	if (append && access(jwks, F_OK) == 0) {
		set = read_jwks(jwks);
		if (!set)
			goto out;
		if (has_kid(set, kid, NULL)) {
			fail("'%s' has a key of that kid already", jwks);
			goto out;
		}
	} else {
		set = json_pack("{s:[]}", "keys");
	}
	key = es_mint_keygen(alg, (int)bits, &err);
	if (!key) {
		fail("%s", err.detail);
		goto out;
	}
	jwk = es_mint_jwk(key, kid, &err);
	if (!jwk || json_array_append(json_object_get(set, "keys"), jwk) < 0) {
		fail("%s", err.detail[0] ? err.detail : "out of memory");
		goto out;
	}
	unlink(priv);
	fd = open(priv, O_WRONLY | O_CREAT | O_EXCL, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		fail("cannot write '%s'", priv);
		goto out;
	}
	if (PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1 ||
	    fclose(f) != 0) {
		f = NULL;
		fail("cannot write '%s'", priv);
		goto out;
	}
	f = NULL;
	if (write_jwks(jwks, set) != 0)
		goto out;
	ret = 0;
out:
	if (f)
		fclose(f);
	json_decref(jwk);
	json_decref(set);
	EVP_PKEY_free(key);
	return ret;
}

static int cmd_drop(int argc, char **argv)
{
	const char *jwks = NULL, *kid = NULL;
	json_t *set;
	size_t at = 0;
	int ret = 1;

	for (int i = 0; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--jwks") == 0)
			jwks = argv[i + 1];
		else if (strcmp(argv[i], "--kid") == 0)
			kid = argv[i + 1];
		else
			return usage();
	}
	if (argc % 2 || !jwks || !kid)
		return usage();
	set = read_jwks(jwks);
	if (!set)
		return 1;
	if (!has_kid(set, kid, &at))
		fail("'%s' has no key of that kid", jwks);
	else if (json_array_remove(json_object_get(set, "keys"), at) == 0)
		ret = write_jwks(jwks, set);
	json_decref(set);
	return ret;
}

/* Put `value` (taken) at the dotted `path` of `obj`, making objects. */
static int set_path(json_t *obj, const char *path, json_t *value)
{
	char buf[256], *p = buf, *dot;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
		json_decref(value);
		return -1;
	}
	while ((dot = strchr(p, '.'))) {
		json_t *next;

		*dot = '\0';
		next = json_object_get(obj, p);
		if (!json_is_object(next)) {
			next = json_object();
			if (json_object_set_new(obj, p, next) < 0) {
				json_decref(value);
				return -1;
			}
		}
		obj = next;
		p = dot + 1;
	}
	return json_object_set_new(obj, p, value);
}

static json_t *roles_array(const char *list)
{
	json_t *arr = json_array();
	char *copy = strdup(list), *save = NULL, *tok;

	if (!arr || !copy) {
		json_decref(arr);
		free(copy);
		return NULL;
	}
	for (tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save))
		json_array_append_new(arr, json_string(tok));
	free(copy);
	return arr;
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n;

	*len = 0;
	if (!f)
		return NULL;
	for (;;) {
		char *nb;

		if (*len == cap) {
			cap = cap ? cap * 2 : 4096;
			nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		n = fread(buf + *len, 1, cap - *len, f);
		*len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	return buf;
}

/* The PEM text of the public half of `key`, as an HMAC secret. */
static char *public_pem(EVP_PKEY *key, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (b && PEM_write_bio_PUBKEY(b, key) == 1) {
		n = BIO_get_mem_data(b, &data);
		out = n > 0 ? malloc((size_t)n) : NULL;
		if (out) {
			memcpy(out, data, (size_t)n);
			*len = (size_t)n;
		}
	}
	BIO_free(b);
	return out;
}

struct mint_opts {
	const char *key, *kid, *sub, *roles, *roles_claim, *iss;
	const char *header_alg, *hs256_file;
	json_t *aud; /* array of strings */
	json_t *claims; /* --claim: name -> value */
	long ttl, nbf_in, iat_in, now;
	bool has_nbf, alg_none, hs256_pem, no_sub, no_exp, no_iat, tamper;
};

static int mint_parse(int argc, char **argv, struct mint_opts *m)
{
	static const char *const flags[] = { "--alg-none", "--hs256-public-pem",
					     "--no-sub",   "--no-exp",
					     "--no-iat",   "--tamper" };
	bool *flag_dst[] = { &m->alg_none, &m->hs256_pem, &m->no_sub,
			     &m->no_exp,   &m->no_iat,	  &m->tamper };

	for (int i = 0; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool is_flag = false;
		long *num = NULL;

		for (size_t f = 0; f < sizeof(flags) / sizeof(*flags); f++)
			if (strcmp(o, flags[f]) == 0) {
				*flag_dst[f] = true;
				is_flag = true;
			}
		if (is_flag)
			continue;
		if (!v)
			return usage();
		i++;
		if (strcmp(o, "--key") == 0)
			m->key = v;
		else if (strcmp(o, "--kid") == 0)
			m->kid = v;
		else if (strcmp(o, "--sub") == 0)
			m->sub = v;
		else if (strcmp(o, "--roles") == 0)
			m->roles = v;
		else if (strcmp(o, "--roles-claim") == 0)
			m->roles_claim = v;
		else if (strcmp(o, "--iss") == 0)
			m->iss = v;
		else if (strcmp(o, "--aud") == 0)
			json_array_append_new(m->aud, json_string(v));
		else if (strcmp(o, "--header-alg") == 0)
			m->header_alg = v;
		else if (strcmp(o, "--hs256-secret-file") == 0)
			m->hs256_file = v;
		else if (strcmp(o, "--ttl") == 0)
			num = &m->ttl;
		else if (strcmp(o, "--nbf-in") == 0) {
			num = &m->nbf_in;
			m->has_nbf = true;
		} else if (strcmp(o, "--iat-in") == 0)
			num = &m->iat_in;
		else if (strcmp(o, "--now") == 0)
			num = &m->now;
		else if (strcmp(o, "--claim") == 0) {
			const char *eq = strchr(v, '=');
			json_error_t jerr;
			json_t *val;
			char name[128];

			if (!eq || eq == v || (size_t)(eq - v) >= sizeof(name))
				return fail("--claim wants NAME=JSON, got '%s'",
					    v);
			memcpy(name, v, (size_t)(eq - v));
			name[eq - v] = '\0';
			val = json_loads(eq + 1, JSON_DECODE_ANY, &jerr);
			if (!val)
				return fail(
					"--claim: the value of '%s' is not JSON",
					name);
			json_object_set_new(m->claims, name, val);
		} else
			return usage();
		if (num && !parse_long(v, num))
			return fail("'%s' is not an integer", v);
	}
	return 0;
}

static int cmd_mint(int argc, char **argv)
{
	struct mint_opts m = { .ttl = 3600, .now = (long)time(NULL) };
	struct es_error err = ES_ERROR_INIT;
	const char *alg = NULL, *name;
	json_t *header = NULL, *payload = NULL, *value;
	EVP_PKEY *key = NULL;
	char *secret = NULL, *tok = NULL;
	size_t secret_len = 0;
	FILE *f;
	int ret = 1;

	m.aud = json_array();
	m.claims = json_object();
	if (!m.aud || !m.claims)
		goto out;
	ret = mint_parse(argc, argv, &m);
	if (ret != 0)
		goto out;
	ret = 1;
	if (!m.iss || json_array_size(m.aud) == 0 || (!m.sub && !m.no_sub) ||
	    (!m.key && !m.alg_none && !m.hs256_file)) {
		ret = usage();
		goto out;
	}
	if (m.key) {
		f = fopen(m.key, "r");
		key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
		if (f)
			fclose(f);
		if (!key || !(alg = es_mint_alg_of(key))) {
			fail("cannot read an RSA or P-256 private key from '%s'",
			     m.key);
			goto out;
		}
	}
	if (m.alg_none) {
		alg = "none";
	} else if (m.hs256_pem || m.hs256_file) {
		secret = m.hs256_file ? read_all(m.hs256_file, &secret_len)
			 : key	      ? public_pem(key, &secret_len)
				      : NULL;
		if (!secret) {
			fail("%s", m.hs256_file
					   ? "cannot read the secret file"
					   : "--hs256-public-pem needs --key");
			goto out;
		}
		alg = "HS256";
	}
	header = json_pack("{s:s, s:s}", "alg",
			   m.header_alg ? m.header_alg : alg, "typ", "JWT");
	if (header && m.kid)
		json_object_set_new(header, "kid", json_string(m.kid));
	payload = json_pack("{s:s}", "iss", m.iss);
	if (!header || !payload)
		goto out;
	json_object_set(payload, "aud",
			json_array_size(m.aud) == 1 ? json_array_get(m.aud, 0)
						    : m.aud);
	if (!m.no_sub)
		json_object_set_new(payload, "sub", json_string(m.sub));
	if (!m.no_iat)
		json_object_set_new(payload, "iat",
				    json_integer(m.now + m.iat_in));
	if (!m.no_exp)
		json_object_set_new(payload, "exp",
				    json_integer(m.now + m.ttl));
	if (m.has_nbf)
		json_object_set_new(payload, "nbf",
				    json_integer(m.now + m.nbf_in));
	if (m.roles &&
	    set_path(payload, m.roles_claim ? m.roles_claim : "roles",
		     roles_array(m.roles)) < 0) {
		fail("bad --roles-claim '%s'", m.roles_claim);
		goto out;
	}
	json_object_foreach(m.claims, name, value)
	{
		json_object_set(payload, name, value);
	}
	tok = es_mint_sign_json(alg, key, secret, secret_len, header, payload,
				&err);
	if (!tok) {
		fail("%s", err.detail);
		goto out;
	}
	if (m.tamper) {
		/* The first character of the signature carries six bits of
		 * its first byte: changing it changes the signature. */
		char *s = strrchr(tok, '.') + 1;

		if (*s)
			*s = *s == 'A' ? 'B' : 'A';
	}
	printf("%s\n", tok);
	ret = fflush(stdout) == 0 ? 0 : 1;
out:
	free(tok);
	free(secret);
	json_decref(header);
	json_decref(payload);
	json_decref(m.aud);
	json_decref(m.claims);
	EVP_PKEY_free(key);
	return ret;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf(PROG " %s\n", TANDEM_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "keygen") == 0)
		return cmd_keygen(argc - 2, argv + 2);
	if (strcmp(argv[1], "drop") == 0)
		return cmd_drop(argc - 2, argv + 2);
	if (strcmp(argv[1], "mint") == 0)
		return cmd_mint(argc - 2, argv + 2);
	return usage();
}
