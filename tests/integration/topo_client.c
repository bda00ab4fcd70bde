/*
 * topo_client.c - one client of the topology test (t0510-topology.sh):
 * through the gateway only, it opens accounts of its own and sends a
 * bounded series of deposits, withdrawals and transfers between them, with
 * read-your-writes GETs along the way; then, once GO_FILE exists, a
 * read-your-writes GET of each of its accounts.
 *
 *   topo_client PORT N ACCOUNTS STEPS DIR GO_FILE
 *
 * Talks to 127.0.0.1:PORT, one connection per request (HTTP/1.0, so an
 * answer ends with its connection). Every POST carries an Idempotency-Key,
 * also sent as X-Correlation-Id so that its events can be found in the log:
 * cN-open-K for the opens, cN-STEP for the others. An answer 502, 503 or
 * 504 is retried with the same request and key after RETRY_MS, at most
 * MAX_TRIES tries in all; no answer at all from the gateway fails.
 *
 * No other client touches its accounts, so it knows their balances and
 * versions and checks every answer against them: 201 for a command, the
 * balance a deposit or withdrawal answers, the versions a transfer
 * answers, and 200 with the balance and version for a GET /accounts/{id}
 * with X-Min-Position set to the position of its last command.
 *
 * Files in DIR (one line each, flushed at once):
 *   ops       KIND KEY FROM TO AMOUNT per command answered 201 (KIND is
 *             open, deposit, withdrawal or transfer; '-' for no account)
 *   retries   STATUS METHOD PATH per retry
 *   replayed  KEY per answer with Idempotent-Replayed: true
 *   final     ID BALANCE VERSION per account, at the end
 *
 * Exits 0 when every check passed, 1 with a message on stderr when one
 * failed, 2 on a usage error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRIES    40
#define RETRY_MS     200
#define IO_TIMEOUT_S 15
#define WAIT_MS	     "3000"
#define GO_WAIT_MS   30000
#define MAX_ACCOUNTS 64
#define ANSWER_MAX   (256 * 1024)
#define REQUEST_MAX  4096

struct account {
	char id[64];
	long long balance;
	long long version;
};

struct answer {
	int status;
	size_t head_len; /* status line and headers, up to the empty line */
	const char *body;
	size_t body_len;
	char buf[ANSWER_MAX + 1];
};

static unsigned int port;
static int client_no;
static FILE *ops_f;
static FILE *retries_f;
static FILE *replayed_f;
static char token[256]; /* the position of the last command */
static unsigned long long rng_state;
static struct answer ans;

static void die(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "client %d: ", client_no);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* xorshift64*: a fixed series per client, so that a failure repeats */
static unsigned int rnd(unsigned int n)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (unsigned int)((rng_state * 2685821657736338717ULL) >> 33) % n;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int dial(void)
{
	struct sockaddr_in sa;
	struct timeval tv = { IO_TIMEOUT_S, 0 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/*
 * The value of header `name` of `a`, copied into `out`, or NULL when it
 * has none.
 */
static const char *header(const struct answer *a, const char *name, char *out,
			  size_t size)
{
	size_t n = strlen(name), i = 0, len;
	const char *line, *end, *v;

	while (i < a->head_len) {
		line = a->buf + i;
		end = memchr(line, '\n', a->head_len - i);
		if (!end)
			end = a->buf + a->head_len;
		i = (size_t)(end - a->buf) + 1;
		if ((size_t)(end - line) <= n || line[n] != ':' ||
		    strncasecmp(line, name, n) != 0)
			continue;
		v = line + n + 1;
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		len = (size_t)(end - v);
		while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == ' '))
			len--;
		if (len >= size)
			len = size - 1;
		memcpy(out, v, len);
		out[len] = '\0';
		return out;
	}
	return NULL;
}

/*
 * Send `req` on a new connection and read the answer into `a` until the
 * server closes. NULL for a complete answer, else why there was none.
 */
static const char *exchange(const char *req, size_t len, struct answer *a)
{
	char cl[32];
	const char *sep, *why = NULL;
	size_t got = 0, sent = 0;
	ssize_t n;
	int fd = dial();

	if (fd < 0)
		return strerror(errno);
	while (sent < len && !why) {
		n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
		if (n > 0)
			sent += (size_t)n;
		else if (n == 0 || errno != EINTR)
			why = strerror(errno);
	}
	while (!why) {
		if (got == ANSWER_MAX) {
			why = "the answer is too long";
			break;
		}
		n = recv(fd, a->buf + got, ANSWER_MAX - got, 0);
		if (n == 0)
			break;
		if (n > 0)
			got += (size_t)n;
		else if (errno != EINTR)
			why = strerror(errno);
	}
	close(fd);
	if (why)
		return why;
	a->buf[got] = '\0';
	sep = strstr(a->buf, "\r\n\r\n");
	if (!sep || sscanf(a->buf, "HTTP/1.%*d %d", &a->status) != 1)
		return got ? "the connection closed in the middle of the answer"
			   : "the connection closed without an answer";
	a->head_len = (size_t)(sep - a->buf) + 2;
	a->body = sep + 4;
	a->body_len = got - (size_t)(a->body - a->buf);
	if (header(a, "Content-Length", cl, sizeof(cl)) &&
	    strtoull(cl, NULL, 10) != a->body_len)
		return "the connection closed in the middle of the body";
	return NULL;
}

/* Append to the request in `req` (REQUEST_MAX bytes, `*len` used). */
static void add(char *req, int *len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void add(char *req, int *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(req + *len, REQUEST_MAX - (size_t)*len, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= REQUEST_MAX - *len)
		die("a request longer than %d bytes", REQUEST_MAX);
	*len += n;
}

/*
 * METHOD PATH through the gateway, with `body` (JSON) and `key` for a POST
 * and `min_pos` for a read-your-writes GET (each may be NULL); retried
 * while the answer is 502, 503 or 504. Fills `ans`.
 */
static void request(const char *method, const char *path, const char *body,
		    const char *key, const char *min_pos)
{
	char req[REQUEST_MAX];
	const char *why;
	int len = 0, tries;

	add(req, &len, "%s %s HTTP/1.0\r\nHost: 127.0.0.1:%u\r\n", method, path,
	    port);
	/* the tests' token (lib.sh's ADMIN_TOKEN), when there is one */
	if (getenv("TANDEM_TOKEN"))
		add(req, &len, "Authorization: Bearer %s\r\n",
		    getenv("TANDEM_TOKEN"));
	if (body)
		add(req, &len,
		    "Content-Type: application/json\r\nContent-Length: %zu\r\n",
		    strlen(body));
	if (key)
		add(req, &len,
		    "Idempotency-Key: %s\r\nX-Correlation-Id: %s\r\n", key,
		    key);
	if (min_pos)
		add(req, &len, "X-Min-Position: %s\r\nX-Wait-Ms: %s\r\n",
		    min_pos, WAIT_MS);
	add(req, &len, "\r\n%s", body ? body : "");
	for (tries = 1;; tries++) {
		why = exchange(req, (size_t)len, &ans);
		if (why)
			die("%s %s (key %s): no answer from the gateway: %s",
			    method, path, key ? key : "-", why);
		if (ans.status != 502 && ans.status != 503 && ans.status != 504)
			return;
		fprintf(retries_f, "%d %s %s\n", ans.status, method, path);
		fflush(retries_f);
		if (tries >= MAX_TRIES)
			die("%s %s (key %s): still %d after %d tries: %.300s",
			    method, path, key ? key : "-", ans.status, tries,
			    ans.body);
		sleep_ms(RETRY_MS);
	}
}

static json_t *answer_json(const char *what)
{
	json_error_t jerr;
	json_t *o = json_loadb(ans.body, ans.body_len, 0, &jerr);

	if (!json_is_object(o))
		die("%s: the answer is not a JSON object (%s): %.300s", what,
		    jerr.text, ans.body);
	return o;
}

static long long int_field(const json_t *o, const char *name, const char *what)
{
	const json_t *v = json_object_get(o, name);

	if (!json_is_integer(v))
		die("%s: no integer '%s' in %.300s", what, name, ans.body);
	return json_integer_value(v);
}

static const char *str_field(const json_t *o, const char *name,
			     const char *what)
{
	const char *s = json_string_value(json_object_get(o, name));

	if (!s)
		die("%s: no string '%s' in %.300s", what, name, ans.body);
	return s;
}

/*
 * POST `body` to `path` with Idempotency-Key `key`: must be 201. Keeps the
 * position in `token`, logs the command in ops. Caller frees the answer
 * with json_decref().
 */
static json_t *command(const char *kind, const char *key, const char *path,
		       const char *body, const struct account *from,
		       const struct account *to, long long amount)
{
	char what[256], v[16];
	json_t *o;

	snprintf(what, sizeof(what), "%s %s (POST %s %s)", kind, key, path,
		 body);
	request("POST", path, body, key, NULL);
	if (ans.status != 201)
		die("%s: expected 201, got %d: %.300s", what, ans.status,
		    ans.body);
	o = answer_json(what);
	snprintf(token, sizeof(token), "%s", str_field(o, "position", what));
	if (header(&ans, "Idempotent-Replayed", v, sizeof(v)) &&
	    strcmp(v, "true") == 0) {
		fprintf(replayed_f, "%s\n", key);
		fflush(replayed_f);
	}
	fprintf(ops_f, "%s %s %s %s %lld\n", kind, key, from ? from->id : "-",
		to ? to->id : "-", amount);
	fflush(ops_f);
	return o;
}

/* GET the account after `token`: must show its balance and version */
static void read_your_write(const struct account *acc)
{
	char path[128], what[512];
	long long bal, ver;
	json_t *o;

	snprintf(path, sizeof(path), "/accounts/%s", acc->id);
	snprintf(what, sizeof(what), "read-your-writes GET %s after %s", path,
		 token);
	request("GET", path, NULL, NULL, token);
	if (ans.status != 200)
		die("%s: expected 200, got %d: %.300s", what, ans.status,
		    ans.body);
	o = answer_json(what);
	bal = int_field(o, "balance", what);
	ver = int_field(o, "version", what);
	if (bal != acc->balance || ver != acc->version)
		die("%s: balance %lld version %lld, expected %lld and %lld",
		    what, bal, ver, acc->balance, acc->version);
	json_decref(o);
}

static FILE *open_log(const char *dir, const char *name)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "a");
	if (!f)
		die("cannot open '%s': %s", path, strerror(errno));
	return f;
}

static long arg(const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr,
			"topo_client: '%s' is not a number in [%ld, %ld]\n", s,
			lo, hi);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	static struct account acc[MAX_ACCOUNTS];
	char key[64], path[128], body[512];
	int naccs, steps, i, k, a, b, r;
	long long amt;
	const char *go;
	FILE *final_f;
	json_t *o;
	long end;

	if (argc != 7) {
		fprintf(stderr,
			"usage: topo_client PORT N ACCOUNTS STEPS DIR GO_FILE\n");
		return 2;
	}
	port = (unsigned int)arg(argv[1], 1, 65535);
	client_no = (int)arg(argv[2], 0, 1000000);
	naccs = (int)arg(argv[3], 2, MAX_ACCOUNTS);
	steps = (int)arg(argv[4], 0, 1000000);
	go = argv[6];
	rng_state = 0x9e3779b97f4a7c15ULL * (unsigned long long)(client_no + 1);
	ops_f = open_log(argv[5], "ops");
	retries_f = open_log(argv[5], "retries");
	replayed_f = open_log(argv[5], "replayed");

	for (k = 0; k < naccs; k++) {
		snprintf(key, sizeof(key), "c%d-open-%d", client_no, k);
		snprintf(body, sizeof(body),
			 "{\"owner\":\"topo-%d\",\"currency\":\"EUR\"}",
			 client_no);
		o = command("open", key, "/accounts", body, NULL, NULL, 0);
		snprintf(acc[k].id, sizeof(acc[k].id), "%s",
			 str_field(o, "account_id", key));
		acc[k].balance = 0;
		acc[k].version = int_field(o, "version", key);
		if (acc[k].version != 1)
			die("%s: a new account at version %lld", key,
			    acc[k].version);
		json_decref(o);
	}

	for (i = 1; i <= steps; i++) {
		r = (int)rnd(10);
		a = (int)rnd((unsigned int)naccs);
		snprintf(key, sizeof(key), "c%d-%d", client_no, i);
		if (acc[a].balance == 0)
			r = 0;
		if (r < 5) {
			amt = 1 + rnd(1000);
			snprintf(path, sizeof(path), "/accounts/%s/deposits",
				 acc[a].id);
			snprintf(body, sizeof(body), "{\"amount\":%lld}", amt);
			o = command("deposit", key, path, body, &acc[a], NULL,
				    amt);
			acc[a].balance += amt;
			acc[a].version++;
		} else if (r < 7) {
			amt = 1 + rnd((unsigned int)acc[a].balance);
			snprintf(path, sizeof(path), "/accounts/%s/withdrawals",
				 acc[a].id);
			snprintf(body, sizeof(body), "{\"amount\":%lld}", amt);
			o = command("withdrawal", key, path, body, &acc[a],
				    NULL, amt);
			acc[a].balance -= amt;
			acc[a].version++;
		} else {
			b = (a + 1 + (int)rnd((unsigned int)naccs - 1)) % naccs;
			amt = 1 + rnd((unsigned int)acc[a].balance);
			snprintf(
				body, sizeof(body),
				"{\"from\":\"%s\",\"to\":\"%s\",\"amount\":%lld}",
				acc[a].id, acc[b].id, amt);
			o = command("transfer", key, "/transfers", body,
				    &acc[a], &acc[b], amt);
			acc[a].balance -= amt;
			acc[b].balance += amt;
			acc[a].version++;
			acc[b].version++;
			if (int_field(o, "from_version", key) !=
				    acc[a].version ||
			    int_field(o, "to_version", key) != acc[b].version)
				die("%s: transfer answered versions %lld and %lld, expected %lld and %lld",
				    key, int_field(o, "from_version", key),
				    int_field(o, "to_version", key),
				    acc[a].version, acc[b].version);
		}
		if (r < 7 && (int_field(o, "balance", key) != acc[a].balance ||
			      int_field(o, "version", key) != acc[a].version))
			die("%s: answered balance %lld version %lld, expected %lld and %lld",
			    key, int_field(o, "balance", key),
			    int_field(o, "version", key), acc[a].balance,
			    acc[a].version);
		json_decref(o);
		if (i % 3 == 0)
			read_your_write(&acc[a]);
	}

	end = now_ms() + GO_WAIT_MS;
	while (access(go, F_OK) != 0) {
		if (now_ms() >= end)
			die("'%s' did not appear within %d ms", go, GO_WAIT_MS);
		sleep_ms(50);
	}
	final_f = open_log(argv[5], "final");
	for (k = 0; k < naccs; k++) {
		read_your_write(&acc[k]);
		fprintf(final_f, "%s %lld %lld\n", acc[k].id, acc[k].balance,
			acc[k].version);
	}
	fclose(final_f);
	fclose(ops_f);
	fclose(retries_f);
	fclose(replayed_f);
	return 0;
}
