/*
 * rawhttp.c - send exact bytes to 127.0.0.1:PORT and report the answer,
 * for tests of what curl will not send (duplicated headers, NUL bytes,
 * slow drips, idle connections).
 *
 *   rawhttp [-n N] [-d MS] [-b] [-f N] [-t MS] [-k] [-c] [-s] PORT < request
 *
 * Reads the request bytes from stdin (may be empty: connect only) and
 * opens N connections (default 1) that each send them, all at once or,
 * with -d MS, one byte every MS milliseconds; with -b as well, the head
 * (up to the empty line) goes at once and only the body drips; with -f N
 * instead, the first N bytes go at once.
 *
 *   -t MS  give up after MS milliseconds (default 5000)
 *   -k     keep the connections open after their answers, until -t runs
 *          out or SIGTERM/SIGINT arrives
 *   -c     one connection: after the answer, wait for the server to
 *          close the connection; exit 4 if it does not within -t
 *   -s     one connection: print only the status code (000 for none)
 *
 * One connection without -k prints the answer as received (status line,
 * headers, body; an interim 100 Continue is left out) and exits 0 when an
 * answer was complete, 2 when the server closed or reset the connection
 * without one, 3 when -t ran out first, 1 on a usage or connect error.
 *
 * Otherwise it prints one line per event, flushed at once:
 *   connected N          all N connections are open (some may already
 *                        have been closed by the server)
 *   answer I STATUS MS   connection I got a complete answer after MS ms
 *   closed I MS          the server closed connection I
 *   done answered A closed C open O
 * and exits 0 (1 when a connection could not be opened).
 */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS  4096
#define ANSWER_MAX (64 * 1024)

struct conn {
	int fd; /* -1 once closed */
	size_t sent;
	long next_send_ms;
	char *buf; /* the answer so far */
	size_t len;
	int status; /* of a complete answer, else 0 */
	bool closed; /* by the server */
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: rawhttp [-n N] [-d MS] [-b] [-f N] [-t MS] [-k] "
		"[-c] [-s] PORT < request\n");
	exit(1);
}

static char *read_stdin(size_t *len)
{
	size_t cap = 4096;
	char *buf = malloc(cap);
	ssize_t n;

	*len = 0;
	while (buf && (n = read(0, buf + *len, cap - *len)) > 0) {
		*len += (size_t)n;
		if (*len == cap) {
			char *more = realloc(buf, cap * 2);

			if (!more) {
				free(buf);
				return NULL;
			}
			buf = more;
			cap *= 2;
		}
	}
	return buf;
}

static int dial(unsigned int port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/*
 * Whether c->buf holds a complete answer; sets c->status. An interim 1xx
 * answer is dropped from the buffer. `eof`: the server closed, so an
 * answer without Content-Length ends here.
 */
static bool answer_complete(struct conn *c, bool eof)
{
	char *sep, *cl;
	size_t head, want;
	int status;

	for (;;) {
		if (c->len < 12)
			return false;
		c->buf[c->len] = '\0';
		sep = strstr(c->buf, "\r\n\r\n");
		if (!sep || sscanf(c->buf, "HTTP/1.%*d %d", &status) != 1)
			return eof &&
			       sscanf(c->buf, "HTTP/1.%*d %d", &c->status) == 1;
		head = (size_t)(sep - c->buf) + 4;
		if (status >= 100 && status < 200) {
			memmove(c->buf, c->buf + head, c->len - head);
			c->len -= head;
			continue;
		}
		break;
	}
	*sep = '\0';
	cl = strcasestr(c->buf, "\r\nContent-Length:");
	*sep = '\r';
	if (!cl) {
		if (eof)
			c->status = status;
		return eof;
	}
	want = strtoul(cl + 17, NULL, 10);
	if (c->len - head < want && !eof)
		return false;
	c->status = status;
	return true;
}

int main(int argc, char **argv)
{
	long timeout = 5000, drip = 0, start, end, t;
	bool keep = false, wait_close = false, status_only = false, events;
	unsigned int port;
	struct conn *conns;
	struct pollfd *pfd;
	size_t req_len, head_len = 0, nconns = 1, i;
	bool body_drip = false;
	char *req;
	int opt, ret = 0, open_fail = 0;

	while ((opt = getopt(argc, argv, "n:d:bf:t:kcs")) != -1) {
		switch (opt) {
		case 'n':
			nconns = strtoul(optarg, NULL, 10);
			break;
		case 'd':
			drip = strtol(optarg, NULL, 10);
			break;
		case 'b':
			body_drip = true;
			break;
		case 'f':
			head_len = strtoul(optarg, NULL, 10);
			break;
		case 't':
			timeout = strtol(optarg, NULL, 10);
			break;
		case 'k':
			keep = true;
			break;
		case 'c':
			wait_close = true;
			break;
		case 's':
			status_only = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || nconns < 1 || nconns > MAX_CONNS)
		usage();
	port = (unsigned int)strtoul(argv[optind], NULL, 10);
	events = keep || nconns > 1;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	req = read_stdin(&req_len);
	conns = calloc(nconns, sizeof(*conns));
	pfd = calloc(nconns, sizeof(*pfd));
	if (!req || !conns || !pfd) {
		fprintf(stderr, "rawhttp: out of memory\n");
		return 1;
	}
	if (body_drip && req) {
		char *sep = memmem(req, req_len, "\r\n\r\n", 4);

		head_len = sep ? (size_t)(sep - req) + 4 : req_len;
	}
	if (head_len > req_len)
		head_len = req_len;
	start = now_ms();
	end = start + timeout;
	for (i = 0; i < nconns; i++)
		conns[i].fd = -1;
	for (i = 0; i < nconns; i++) {
		conns[i].buf = malloc(ANSWER_MAX + 1);
		conns[i].fd = conns[i].buf ? dial(port) : -1;
		conns[i].next_send_ms = start;
		if (conns[i].fd < 0) {
			fprintf(stderr,
				"rawhttp: connection %zu to port %u: %s\n", i,
				port, strerror(errno));
			open_fail = 1;
			break;
		}
	}
	if (open_fail && !events)
		end = start; /* report the failure below */
	if (events) {
		printf("connected %zu\n", i);
		fflush(stdout);
	}

	while (!stop && (t = now_ms()) < end) {
		int wait = (int)(end - t), live = 0;

		for (i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];

			pfd[i].fd = c->fd;
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
			if (c->fd < 0)
				continue;
			if (c->status && !keep && !wait_close) {
				pfd[i].fd = -1;
				continue;
			}
			live++;
			if (c->sent < req_len && !c->status) {
				if (c->next_send_ms <= t)
					pfd[i].events |= POLLOUT;
				else if (c->next_send_ms - t < wait)
					wait = (int)(c->next_send_ms - t);
			}
		}
		if (!live && !keep)
			break;
		if (poll(pfd, nconns, wait) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		t = now_ms();
		for (i = 0; i < nconns; i++) {
			struct conn *c = &conns[i];
			bool eof = false;
			ssize_t n;

			if (c->fd < 0)
				continue;
			if (pfd[i].revents & POLLOUT) {
				size_t want = req_len - c->sent;

				if (drip && c->sent >= head_len)
					want = 1;
				else if (drip)
					want = head_len - c->sent;

				n = send(c->fd, req + c->sent, want,
					 MSG_NOSIGNAL);
				if (n > 0) {
					c->sent += (size_t)n;
					c->next_send_ms = t + drip;
				} else if (n < 0 && errno != EAGAIN) {
					pfd[i].revents |= POLLIN;
				}
			}
			if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			while ((n = recv(c->fd, c->buf + c->len,
					 ANSWER_MAX - c->len, 0)) > 0) {
				c->len += (size_t)n;
				if (c->len == ANSWER_MAX)
					break;
			}
			if (n == 0 || (n < 0 && errno != EAGAIN))
				eof = true;
			if (!c->status && answer_complete(c, eof) && events) {
				printf("answer %zu %d %ld\n", i, c->status,
				       t - start);
				fflush(stdout);
			}
			if (eof) {
				close(c->fd);
				c->fd = -1;
				c->closed = true;
				if (events) {
					printf("closed %zu %ld\n", i,
					       t - start);
					fflush(stdout);
				}
			}
		}
	}

	if (events) {
		size_t answered = 0, closed = 0, open = 0;

		for (i = 0; i < nconns; i++) {
			answered += conns[i].status != 0;
			closed += conns[i].closed;
			open += conns[i].fd >= 0;
		}
		printf("done answered %zu closed %zu open %zu\n", answered,
		       closed, open);
		ret = open_fail;
	} else if (open_fail) {
		ret = 1;
	} else {
		if (status_only)
			printf("%03d\n", conns[0].status);
		else
			fwrite(conns[0].buf, 1, conns[0].len, stdout);
		if (!conns[0].status)
			ret = conns[0].closed ? 2 : 3;
		else if (wait_close && !conns[0].closed)
			ret = 4;
	}
	for (i = 0; i < nconns; i++) {
		if (conns[i].fd >= 0)
			close(conns[i].fd);
		free(conns[i].buf);
	}
	free(conns);
	free(pfd);
	free(req);
	return ret;
}
