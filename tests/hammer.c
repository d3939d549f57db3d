/*
 * hammer.c - one "host" of the ledger tests: a process that opens its own
 * context and resolves from several threads, writing one line for each
 * answer as soon as it has it, so that what a process was told survives
 * its SIGKILL.
 *
 *     hammer -c CONFIG -T THREADS -u USERS -n TRIES [-P PREFIX] [-d MS]
 *            [-U] [-R ROUNDS] [-p MS]
 *
 * Each thread asks TRIES times for each of USERS users (PREFIX0,
 * PREFIX1, ...; default "user"), for provider anthropic, MS milliseconds
 * apart.  With -R, THREADS new threads do that ROUNDS times, one round
 * after the other ends (threads that come and go, as a server's per
 * client), -p MS apart; after each round but the last, "P ROUND" says
 * the pause has begun.  Lines, each written whole with one write():
 *   A USER      admitted
 *   D USER      denied by a quota
 *   L USER MSG  denied, or failed, because of the ledger (MSG names it)
 *   E MSG       anything else
 *   R USER      (-U) admitted, reported unused: refunded
 *   X USER MSG  (-U) a second report of the same secret was not refused
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <keyway/keyway.h>

struct plan {
	const char *config;
	const char *prefix;
	unsigned threads;
	unsigned users;
	unsigned tries;
	unsigned delay_ms;
	unsigned rounds;
	unsigned pause_ms;
	bool unused;
	kw_ctx *ctx;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	for (int i = 0; i < n; i++)
		if (line[i] == '\n')
			line[i] = ' ';
	line[n++] = '\n';
	while (write(1, line, (size_t)n) < 0 && errno == EINTR)
		;
}

static void *run(void *arg)
{
	const struct plan *pl = arg;
	char user[64];

	for (unsigned t = 0; t < pl->tries; t++) {
		for (unsigned u = 0; u < pl->users; u++) {
			kw_request req = KW_REQUEST_INIT;
			kw_secret *s = NULL;
			kw_status st;

			snprintf(user, sizeof(user), "%s%u", pl->prefix, u);
			req.provider = "anthropic";
			req.user = user;
			st = kw_resolve(pl->ctx, &req, &s);
			if (st == KW_OK && pl->unused) {
				st = kw_secret_report(s, KW_UNUSED);
				if (st == KW_OK)
					say("R %s", user);
				else
					say("E %s: report: %s", user,
					    kw_last_error());
				if (kw_secret_report(s, KW_UNUSED) == KW_OK)
					say("X %s second report accepted",
					    user);
			} else if (st == KW_OK) {
				say("A %s", user);
			} else if (strstr(kw_last_error(), "ledger") != NULL) {
				say("L %s %s", user, kw_last_error());
			} else if (st == KW_ERR_DENIED) {
				say("D %s", user);
			} else {
				say("E %s: %s", kw_status_str(st),
				    kw_last_error());
			}
			kw_secret_free(s);
			if (pl->delay_ms > 0) {
				struct timespec ts = {
					pl->delay_ms / 1000,
					(long)(pl->delay_ms % 1000) * 1000000L
				};

				nanosleep(&ts, NULL);
			}
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct plan pl = { .prefix = "user", .threads = 1, .users = 1,
			   .tries = 1, .rounds = 1 };
	pthread_t *th;
	int c;

	while ((c = getopt(argc, argv, "c:T:u:n:P:d:UR:p:")) != -1) {
		switch (c) {
		case 'c':
			pl.config = optarg;
			break;
		case 'T':
			pl.threads = (unsigned)atoi(optarg);
			break;
		case 'u':
			pl.users = (unsigned)atoi(optarg);
			break;
		case 'n':
			pl.tries = (unsigned)atoi(optarg);
			break;
		case 'P':
			pl.prefix = optarg;
			break;
		case 'd':
			pl.delay_ms = (unsigned)atoi(optarg);
			break;
		case 'U':
			pl.unused = true;
			break;
		case 'R':
			pl.rounds = (unsigned)atoi(optarg);
			break;
		case 'p':
			pl.pause_ms = (unsigned)atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: hammer -c CONFIG [-T THREADS] "
				"[-u USERS] [-n TRIES] [-P PREFIX] [-d MS] "
				"[-U] [-R ROUNDS] [-p MS]\n");
			return 2;
		}
	}
	if (pl.config == NULL || pl.threads == 0 || pl.rounds == 0 ||
	    optind != argc)
		return 2;
	if (kw_open(&pl.ctx, pl.config) != KW_OK) {
		say("E open: %s", kw_last_error());
		return 1;
	}
	th = calloc(pl.threads, sizeof(*th));
	if (th == NULL)
		return 1;
	for (unsigned n = 0; n < pl.rounds; n++) {
		for (unsigned t = 0; t < pl.threads; t++)
			if (pthread_create(&th[t], NULL, run, &pl) != 0) {
				say("E cannot start a thread");
				return 1;
			}
		for (unsigned t = 0; t < pl.threads; t++)
			pthread_join(th[t], NULL);
		if (n + 1 < pl.rounds && pl.pause_ms > 0) {
			struct timespec ts = {
				pl.pause_ms / 1000,
				(long)(pl.pause_ms % 1000) * 1000000L
			};

			say("P %u", n + 1);
			nanosleep(&ts, NULL);
		}
	}
	free(th);
	kw_close(pl.ctx);
	return 0;
}
