/*
 * http_client.c - resolve requests sent to keywayd(8), or to the floor
 * server bench/http_floor, over its Unix socket: one client per thread,
 * each with its own connection kept alive, one request after another.
 *
 *     http_client -s SOCKET -n USERS [-k OPS] [-r REPS] [-t CLIENTS]
 *                 [-S SEED] [-O ORG] [-B BACKEND] [-f]
 *
 * Each request is POST /v1/resolve of {"provider":"anthropic","user":U,
 * "org":ORG}, U drawn uniformly from the USERS stored, in the order
 * bench/resolve draws them; it is written with one send() and its answer
 * read up to its Content-Length, by hand (no HTTP library: what the client
 * costs, floor and keywayd pay alike).  Every answer must be 200; without
 * -f (the floor, which answers a fixed body) one in 1024 must hold the
 * key stored for U and name BACKEND (default "user_keys").  A connection
 * the server closes is opened again and counted: keep-alive is honoured
 * when that count is 0.  Leases are not reported; keywayd counts them used
 * when they expire.
 *
 * Prints one JSON line: ns per round trip for each rep (wall time over all
 * clients' requests; 1e9 / it is requests a second), the mean time a
 * client waited for one answer (its own wall time over its requests), and
 * the connections opened again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "benchutil.h"

static const char *prog = "http_client";

struct shared {
	const char *sock;
	const char *names;
	struct bu_run run;
	const char *org;
	const char *backend;
	bool floor;
};

struct worker {
	struct shared *sh;
	unsigned index;
	pthread_t thread;
	int fd;
	uint64_t errors;
	uint64_t reconnects;
	double *rtt_ns;		/* per rep: this client's mean wait */
	char buf[16384];
	char why[512];
};

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Read one answer into w->buf; its status, body and whether the server
 * will close the connection.  -1 when the connection ended first. */
static int read_answer(struct worker *w, const char **body, size_t *blen,
		       bool *closing)
{
	size_t have = 0, head = 0, clen = 0;
	char *end;
	int status;

	for (;;) {
		ssize_t r = recv(w->fd, w->buf + have, sizeof(w->buf) - 1 - have,
				 0);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		have += (size_t)r;
		w->buf[have] = '\0';
		if (head == 0) {
			const char *cl;

			end = strstr(w->buf, "\r\n\r\n");
			if (end == NULL) {
				if (have == sizeof(w->buf) - 1)
					return -1;
				continue;
			}
			head = (size_t)(end - w->buf) + 4;
			cl = strcasestr(w->buf, "\r\nContent-Length:");
			if (cl == NULL || cl > end)
				return -1;
			clen = strtoul(cl + 17, NULL, 10);
			if (head + clen >= sizeof(w->buf))
				return -1;
		}
		if (have >= head + clen)
			break;
	}
	if (sscanf(w->buf, "HTTP/1.1 %d", &status) != 1)
		return -1;
	end = strcasestr(w->buf, "\r\nConnection: close");
	*closing = end != NULL && end < w->buf + head;
	*body = w->buf + head;
	*blen = clen;
	return status;
}

static int one(struct worker *w, uint64_t i, bool check)
{
	const struct shared *sh = w->sh;
	const char *user = sh->names + i * BU_NAME_SIZE, *body;
	char req[512], json[256], want[BU_KEY_LEN + 16];
	size_t blen;
	bool closing;
	int n, m, status;

	m = snprintf(json, sizeof(json),
		     "{\"provider\":\"" BU_PROVIDER "\",\"user\":\"%s\","
		     "\"org\":\"%s\"}", user, sh->org);
	n = snprintf(req, sizeof(req),
		     "POST /v1/resolve HTTP/1.1\r\nHost: keyway\r\n"
		     "Content-Type: application/json\r\n"
		     "Content-Length: %d\r\n\r\n%s", m, json);
	for (int attempt = 0;; attempt++) {
		if (w->fd < 0) {
			w->fd = connect_to(sh->sock);
			if (w->fd < 0) {
				snprintf(w->why, sizeof(w->why), "connect %s: %s",
					 sh->sock, strerror(errno));
				return -1;
			}
		}
		if (send_all(w->fd, req, (size_t)n)) {
			status = read_answer(w, &body, &blen, &closing);
			if (status >= 0)
				break;
		}
		/* Closed under us (an idle timeout): once more, anew. */
		close(w->fd);
		w->fd = -1;
		w->reconnects++;
		if (attempt > 0) {
			snprintf(w->why, sizeof(w->why),
				 "the server closed the connection twice");
			return -1;
		}
	}
	if (closing) {
		close(w->fd);
		w->fd = -1;
		w->reconnects++;
	}
	if (status != 200) {
		snprintf(w->why, sizeof(w->why), "%s: HTTP %d: %.*s", user,
			 status, (int)(blen > 300 ? 300 : blen), body);
		return -1;
	}
	if (check && !sh->floor) {
		memcpy(want, "{\"key\":\"", 8);
		bu_key_value(i, want + 8);
		snprintf(json, sizeof(json), "\"backend\":\"%s\"", sh->backend);
		if (blen < sizeof(want) - 8 ||
		    memcmp(body, want, 8 + BU_KEY_LEN) != 0 ||
		    body[8 + BU_KEY_LEN] != '"' ||
		    memmem(body, blen, json, strlen(json)) == NULL) {
			snprintf(w->why, sizeof(w->why),
				 "%s: not the key stored, or not from %s", user,
				 sh->backend);
			return -1;
		}
	}
	return 0;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	struct bu_rng rng;

	bu_rng_seed(&rng, sh->run.seed + w->index);
	for (int rep = -1; rep < sh->run.reps; rep++) {
		uint64_t n = bu_run_share(&sh->run, rep), t0;

		pthread_barrier_wait(&sh->run.start);
		t0 = bu_now_ns();
		for (uint64_t k = 0; k < n && w->errors == 0; k++) {
			uint64_t i = bu_draw(&rng, sh->run.users, 0);

			if (one(w, i, (k & 1023) == 0) != 0)
				w->errors++;
		}
		if (rep >= 0)
			w->rtt_ns[rep] = (double)(bu_now_ns() - t0) / (double)n;
		else
			w->reconnects = 0; /* the warm-up opens it */
		pthread_barrier_wait(&sh->run.done);
	}
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: %s -s SOCKET -n USERS [-k OPS] [-r REPS] "
		"[-t CLIENTS] [-S SEED] [-O ORG] [-B BACKEND] [-f]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct shared sh = { .run = { .ops = 20000, .threads = 1,
				      .seed = 1, .reps = 5 }, .org = "acme",
			     .backend = "user_keys" };
	struct worker *w = NULL;
	double *ns = NULL, *rtt = NULL;
	uint64_t reconnects = 0;
	char *names = NULL;
	bool failed = false;
	int c, ret = 1;

	while ((c = getopt(argc, argv, "s:n:k:r:t:S:O:B:f")) != -1) {
		switch (c) {
		case 's':
			sh.sock = optarg;
			break;
		case 'O':
			sh.org = optarg;
			break;
		case 'B':
			sh.backend = optarg;
			break;
		case 'f':
			sh.floor = true;
			break;
		default:
			if (!bu_run_opt(&sh.run, prog, c, optarg))
				usage();
		}
	}
	if (sh.sock == NULL || optind != argc ||
	    !bu_run_ready(&sh.run))
		usage();
	names = bu_name_table(sh.run.users);
	w = calloc(sh.run.threads, sizeof(*w));
	ns = calloc((size_t)sh.run.reps, sizeof(*ns));
	rtt = calloc((size_t)sh.run.reps, sizeof(*rtt));
	if (names == NULL || w == NULL || ns == NULL || rtt == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto out;
	}
	sh.names = names;
	for (unsigned t = 0; t < sh.run.threads; t++) {
		w[t].sh = &sh;
		w[t].index = t;
		w[t].fd = -1;
		w[t].rtt_ns = calloc((size_t)sh.run.reps, sizeof(double));
		if (w[t].rtt_ns == NULL) {
			fprintf(stderr, "%s: out of memory\n", prog);
			exit(1);
		}
		pthread_create(&w[t].thread, NULL, work, &w[t]);
	}
	bu_run_time(&sh.run, ns);
	for (unsigned t = 0; t < sh.run.threads; t++) {
		pthread_join(w[t].thread, NULL);
		if (w[t].errors != 0) {
			fprintf(stderr, "%s: %s\n", prog, w[t].why);
			failed = true;
		}
		reconnects += w[t].reconnects;
		for (int rep = 0; rep < sh.run.reps; rep++)
			rtt[rep] += w[t].rtt_ns[rep] / sh.run.threads;
		if (w[t].fd >= 0)
			close(w[t].fd);
		free(w[t].rtt_ns);
	}
	if (failed)
		goto out;
	printf("{\"bench\": \"http_client\", \"users\": %" PRIu64
	       ", \"threads\": %u, \"ops\": %" PRIu64 ", \"reconnects\": %"
	       PRIu64 ", ", sh.run.users, sh.run.threads, sh.run.ops,
	       reconnects);
	bu_json_list(stdout, "ns_per_op", ns, (size_t)sh.run.reps);
	printf(", ");
	bu_json_list(stdout, "rtt_ns", rtt, (size_t)sh.run.reps);
	printf("}\n");
	ret = 0;
out:
	free(w);
	free(ns);
	free(rtt);
	free(names);
	return ret;
}
