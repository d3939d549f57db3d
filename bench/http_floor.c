/*
 * http_floor.c - the floor under a keywayd(8) round trip: a libmicrohttpd
 * server on a Unix socket, started as keywayd starts its own (the same
 * daemon flags, a thread per connection with its stack size, connection
 * limit, timeout, completion and connection callbacks, and listening
 * socket), that reads a request's body and answers with a fixed body,
 * doing nothing else: no JSON parsed, no caller looked up, no chain, no
 * lease.
 *
 *     http_floor -s SOCKET [-p | -t THREADS] [-m MAX_CONNECTIONS]
 *                [-T TIMEOUT] [-b ANSWER_BYTES]
 *
 * -p serves each connection on a thread of its own, as keywayd does;
 * -t, a pool of THREADS threads each polling many connections with epoll,
 * as keywayd did before, so that a run can compare builds of both.
 *
 * The answer is ANSWER_BYTES (default 190, about what keywayd answers a
 * resolve of a 108-byte key with) of JSON from static memory, with the
 * headers keywayd sends (Content-Type, Cache-Control); a response is made
 * per request, as any server answering a dynamic body must.  Runs until
 * SIGTERM or SIGINT.  Prints "listening" on stdout once it accepts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#include "benchutil.h"

static const char *prog = "http_floor";
static char answer[4096];
static size_t answer_len = 190;

/* The first call of a request allocates what keywayd allocates for it;
 * the body is read and dropped; the last call answers. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **con_cls)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (*con_cls == NULL) {
		*con_cls = &answer_len;
		return MHD_YES;
	}
	if (*upload_size != 0) {
		*upload_size = 0;
		return MHD_YES;
	}
	r = MHD_create_response_from_buffer(answer_len, answer,
					    MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	*con_cls = NULL;
}

/* keywayd keeps who is at the other end of a connection in a block of
 * its own, allocated when the connection starts. */
static void connection_notify(void *cls, struct MHD_Connection *c,
			      void **socket_context,
			      enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		*socket_context = calloc(1, 1120);
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		free(*socket_context);
		*socket_context = NULL;
	}
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
}

/* As keywayd's listen_on(): a new socket, mode 0600, backlog 128. */
static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "%s: %s: path too long\n", prog, path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r != 0 || listen(fd, 128) != 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	unsigned threads = 4, max_conn = 256, timeout = 10;
	bool per_conn = false;
	const char *sock = NULL;
	struct MHD_Daemon *d;
	sigset_t sigs;
	int c, fd, sig;

	while ((c = getopt(argc, argv, "s:pt:m:T:b:")) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'p':
			per_conn = true;
			break;
		case 't':
			threads = (unsigned)bu_count(prog, "-t", optarg);
			break;
		case 'm':
			max_conn = (unsigned)bu_count(prog, "-m", optarg);
			break;
		case 'T':
			timeout = (unsigned)bu_count(prog, "-T", optarg);
			break;
		case 'b':
			answer_len = (size_t)bu_count(prog, "-b", optarg);
			break;
		default:
			sock = NULL;
			optind = argc + 1;
			break;
		}
	}
	if (sock == NULL || optind != argc || threads == 0 ||
	    answer_len < 16 || answer_len >= sizeof(answer)) {
		fprintf(stderr, "usage: %s -s SOCKET [-p | -t THREADS] "
			"[-m MAX_CONNECTIONS] [-T TIMEOUT] [-b ANSWER_BYTES]\n",
			prog);
		return 2;
	}
	/* {"key":"xxx...x"}\n, as long as asked. */
	memset(answer, 'x', answer_len);
	memcpy(answer, "{\"key\":\"", 8);
	memcpy(answer + answer_len - 3, "\"}\n", 3);

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	fd = listen_on(sock);
	if (fd < 0)
		return 1;
	if (per_conn)
		d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
				     MHD_USE_INTERNAL_POLLING_THREAD |
				     MHD_USE_ITC | MHD_USE_ERROR_LOG,
				     0, NULL, NULL, handle, NULL,
				     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				     MHD_OPTION_LISTEN_SOCKET, fd,
				     MHD_OPTION_THREAD_STACK_SIZE,
				     (size_t)(512 * 1024),
				     MHD_OPTION_CONNECTION_LIMIT, max_conn,
				     MHD_OPTION_CONNECTION_TIMEOUT, timeout,
				     MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
				     MHD_OPTION_NOTIFY_CONNECTION,
				     connection_notify, NULL,
				     MHD_OPTION_END);
	else
		d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
				     MHD_USE_EPOLL | MHD_USE_ITC |
				     MHD_USE_ERROR_LOG,
				     0, NULL, NULL, handle, NULL,
				     MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				     MHD_OPTION_LISTEN_SOCKET, fd,
				     MHD_OPTION_THREAD_POOL_SIZE, threads,
				     MHD_OPTION_CONNECTION_LIMIT, max_conn,
				     MHD_OPTION_CONNECTION_TIMEOUT, timeout,
				     MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
				     MHD_OPTION_NOTIFY_CONNECTION,
				     connection_notify, NULL,
				     MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "%s: cannot start serving on %s\n", prog, sock);
		unlink(sock);
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	while (sigwait(&sigs, &sig) == 0 && sig != SIGTERM && sig != SIGINT)
		;
	MHD_stop_daemon(d);
	close(fd);
	unlink(sock);
	return 0;
}
