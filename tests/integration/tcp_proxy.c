/*
 * tcp_proxy.c - a TCP forwarder for tests: tcp_proxy PORT UPSTREAM_PORT
 * listens on 127.0.0.1:PORT and joins each connection to
 * 127.0.0.1:UPSTREAM_PORT, one process per connection, all in the
 * proxy's process group. Killing the group cuts every connection at once
 * while both ends stay up (a network cut, as the server sees it: nothing
 * until it writes). Prints "listening" on stdout once it accepts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static int port_arg(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s && !*end && v > 0 && v < 65536 ? (int)v : -1;
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a = { 0 };

	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

/* Copy what `from` has to `to`: 0 at its end or on an error. */
static int pass(int from, int to)
{
	char buf[16384];
	ssize_t n = read(from, buf, sizeof(buf)), w;

	if (n <= 0)
		return 0;
	for (ssize_t off = 0; off < n; off += w) {
		w = write(to, buf + off, (size_t)(n - off));
		if (w <= 0)
			return 0;
	}
	return 1;
}

static void join(int client, int upstream_port)
{
	struct sockaddr_in up = loopback(upstream_port);
	int server = socket(AF_INET, SOCK_STREAM, 0);
	struct pollfd p[2];

	if (server < 0 ||
	    connect(server, (struct sockaddr *)&up, sizeof(up)) < 0)
		_exit(1);
	p[0] = (struct pollfd){ .fd = client, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = server, .events = POLLIN };
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[0].revents && !pass(client, server))
			break;
		if (p[1].revents && !pass(server, client))
			break;
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	int port = argc == 3 ? port_arg(argv[1]) : -1;
	int upstream = argc == 3 ? port_arg(argv[2]) : -1;
	struct sockaddr_in addr;
	int one = 1, lfd, c;

	if (port < 0 || upstream < 0) {
		fprintf(stderr, "usage: tcp_proxy PORT UPSTREAM_PORT\n");
		return 2;
	}
	signal(SIGCHLD, SIG_IGN); /* no zombies */
	addr = loopback(port);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    listen(lfd, 64) < 0) {
		perror("tcp_proxy");
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		c = accept(lfd, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			perror("tcp_proxy: accept");
			return 1;
		}
		if (fork() == 0) {
			close(lfd);
			join(c, upstream);
		}
		close(c);
	}
}
