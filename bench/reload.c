/*
 * reload.c - what a reader of a key file pays when the file changed: the
 * first kw_resolve() after another writer replaced the file, against a
 * kw_resolve() while it is unchanged.
 *
 *     reload -c CONFIG -n USERS [-r ROUNDS] [-u UNCHANGED] [-i USER]
 *            [-O ORG] [-B BACKEND] [-P]
 *
 * Two contexts on CONFIG: the reader, which has the file loaded (it
 * resolved before the first round), and the writer: with -P in a process
 * of its own, else in the reader's process (a context keeps its own copy
 * of the file, as a process does).  Each round the writer rotates the key
 * of user number USER (default USERS / 2) to a new value (kw_key_put()
 * into BACKEND, which replaces the whole file), then the reader resolves
 * that user once, timed: it must notice the change and hand out the new
 * value.  Then it resolves the same user UNCHANGED more times, each timed,
 * on the unchanged file.
 *
 * The reader reports its secrets KW_UNUSED, so that it never writes use
 * counts (which would change the file under the unchanged resolves).
 * CONFIG's file is changed: run it on a copy.
 *
 * Prints one JSON line: the writer's put, the first resolve after it and
 * the CPU time that resolve took (in ms), and the unchanged resolves (in
 * ns), for every round.  On a shared machine the CPU time is the steadier
 * of the two: it leaves out the time the reader waited for a CPU.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <keyway/keyway.h>

#include "benchutil.h"

static const char *prog = "reload";

struct opts {
	const char *org;
	const char *backend;
	const char *user;
};

/* CPU time of the calling thread, in ns. */
static uint64_t cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Resolve for user and check that the value is want; its time in ns, and
 * the CPU time it took (when cpu is not NULL).
 */
static int timed_resolve(kw_ctx *ctx, const struct opts *o,
			 const char want[BU_KEY_LEN], uint64_t *ns,
			 uint64_t *cpu)
{
	kw_request req = KW_REQUEST_INIT;
	kw_secret *s = NULL;
	uint64_t t0, t1, c0 = 0;
	kw_status st;
	int ret = -1;

	req.provider = BU_PROVIDER;
	req.user = o->user;
	req.org = o->org;
	if (cpu != NULL)
		c0 = cpu_ns();
	t0 = bu_now_ns();
	st = kw_resolve(ctx, &req, &s);
	t1 = bu_now_ns();
	if (cpu != NULL)
		*cpu = cpu_ns() - c0;
	if (st != KW_OK) {
		fprintf(stderr, "%s: resolve for %s: %s: %s\n", prog, o->user,
			kw_status_str(st), kw_last_error());
		return -1;
	}
	if (kw_secret_len(s) != BU_KEY_LEN ||
	    strcmp(kw_secret_backend(s), o->backend) != 0 ||
	    memcmp(want, kw_secret_value(s), BU_KEY_LEN) != 0) {
		fprintf(stderr, "%s: %s: not the value just stored handed out "
			"(%zu bytes, by %s)\n", prog, o->user,
			kw_secret_len(s), kw_secret_backend(s));
		goto out;
	}
	if (kw_secret_report(s, KW_UNUSED) != KW_OK) {
		fprintf(stderr, "%s: %s\n", prog, kw_last_error());
		goto out;
	}
	*ns = t1 - t0;
	ret = 0;
out:
	kw_secret_free(s);
	return ret;
}

/* Rotate the user's key to value; its time in ns. */
static int put(kw_ctx *ctx, const struct opts *o, const char *value,
	       uint64_t *ns)
{
	kw_actor actor = KW_ACTOR_INIT;
	kw_key_ref ref = KW_KEY_REF_INIT;
	uint64_t t0;
	kw_status st;

	actor.user = "bench";
	actor.role = KW_ROLE_SYSADMIN;
	ref.backend = o->backend;
	ref.owner = o->user;
	ref.provider = BU_PROVIDER;
	t0 = bu_now_ns();
	st = kw_key_put(ctx, &actor, &ref, value, BU_KEY_LEN, NULL,
			KW_PUT_ROTATE);
	*ns = bu_now_ns() - t0;
	if (st != KW_OK) {
		fprintf(stderr, "%s: cannot rotate the key of %s: %s\n", prog,
			o->user, kw_last_error());
		return -1;
	}
	return 0;
}

/* The writer: a context here, or a process that has one. */
struct writer {
	kw_ctx *ctx;
	pid_t pid;
	int to, from;   /* pipes to and from the process */
};

static bool io(bool out, int fd, uint64_t *v)
{
	size_t done = 0;

	while (done < sizeof(*v)) {
		ssize_t n = out ? write(fd, (char *)v + done, sizeof(*v) - done)
				: read(fd, (char *)v + done, sizeof(*v) - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return true;
}

/* The writer process: rotates the key to the value of round r when asked
 * for r, and answers with the time it took (UINT64_MAX: failed). */
static int writer_main(const char *config, const struct opts *o,
		       uint64_t users, int in, int out)
{
	char value[BU_KEY_LEN];
	kw_ctx *ctx = NULL;
	uint64_t r, ns;
	int ret = 1;

	if (kw_open(&ctx, config) != KW_OK) {
		fprintf(stderr, "%s: writer: %s\n", prog, kw_last_error());
		ns = UINT64_MAX;
		(void)io(true, out, &ns);
		return 1;
	}
	while (io(false, in, &r)) {
		bu_key_value(users + 1 + r, value);
		if (put(ctx, o, value, &ns) != 0)
			ns = UINT64_MAX;
		if (!io(true, out, &ns) || ns == UINT64_MAX)
			goto out;
	}
	ret = 0;
out:
	explicit_bzero(value, sizeof(value));
	kw_close(ctx);
	return ret;
}

static int writer_start(struct writer *w, bool process, const char *config,
			const struct opts *o, uint64_t users)
{
	int down[2], up[2];

	w->ctx = NULL;
	w->pid = -1;
	w->to = w->from = -1;
	if (!process) {
		if (kw_open(&w->ctx, config) == KW_OK)
			return 0;
		fprintf(stderr, "%s: %s\n", prog, kw_last_error());
		return -1;
	}
	if (pipe(down) != 0 || pipe(up) != 0) {
		fprintf(stderr, "%s: pipe: %s\n", prog, strerror(errno));
		return -1;
	}
	fflush(NULL);
	w->pid = fork();
	if (w->pid < 0) {
		fprintf(stderr, "%s: fork: %s\n", prog, strerror(errno));
		return -1;
	}
	if (w->pid == 0) {
		close(down[1]);
		close(up[0]);
		_exit(writer_main(config, o, users, down[0], up[1]));
	}
	close(down[0]);
	close(up[1]);
	w->to = down[1];
	w->from = up[0];
	return 0;
}

/* Rotate the key to the value of round r; the time it took. */
static int writer_put(struct writer *w, const struct opts *o, uint64_t users,
		      uint64_t r, uint64_t *ns)
{
	char value[BU_KEY_LEN];
	int ret;

	if (w->ctx == NULL) {
		if (!io(true, w->to, &r) || !io(false, w->from, ns) ||
		    *ns == UINT64_MAX) {
			fprintf(stderr, "%s: the writer process failed\n",
				prog);
			return -1;
		}
		return 0;
	}
	bu_key_value(users + 1 + r, value);
	ret = put(w->ctx, o, value, ns);
	explicit_bzero(value, sizeof(value));
	return ret;
}

/* 0, or -1 when the writer process did not end well. */
static int writer_stop(struct writer *w)
{
	int status;

	pid_t pid = w->pid;

	kw_close(w->ctx);
	if (w->to >= 0)
		close(w->to);
	if (w->from >= 0)
		close(w->from);
	w->ctx = NULL;
	w->to = w->from = -1;
	w->pid = -1;
	if (pid <= 0)
		return 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void json_ns(const char *key, const uint64_t *v, size_t n,
		    double scale)
{
	double *d = malloc((n > 0 ? n : 1) * sizeof(*d));

	if (d == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		d[i] = (double)v[i] / scale;
	printf(", ");
	bu_json_list(stdout, key, d, n);
	free(d);
}

static void usage(void)
{
	fprintf(stderr, "usage: %s -c CONFIG -n USERS [-r ROUNDS] "
		"[-u UNCHANGED] [-i USER] [-O ORG] [-B BACKEND] [-P]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = { .org = "acme", .backend = "user_keys" };
	uint64_t users = 0, rounds = 20, unchanged = 10, index = UINT64_MAX;
	uint64_t *put_ns = NULL, *first_ns = NULL, *first_cpu = NULL;
	uint64_t *same_ns = NULL;
	struct writer writer = { NULL, -1, -1, -1 };
	kw_ctx *reader = NULL;
	const char *config = NULL;
	char name[BU_NAME_SIZE], value[BU_KEY_LEN];
	bool process = false;
	int c, ret = 1;

	while ((c = getopt(argc, argv, "c:n:r:u:i:O:B:P")) != -1) {
		switch (c) {
		case 'P':
			process = true;
			break;
		case 'c':
			config = optarg;
			break;
		case 'n':
			users = bu_count(prog, "-n", optarg);
			break;
		case 'r':
			rounds = bu_count(prog, "-r", optarg);
			break;
		case 'u':
			unchanged = bu_count(prog, "-u", optarg);
			break;
		case 'i':
			index = bu_count(prog, "-i", optarg);
			break;
		case 'O':
			o.org = optarg;
			break;
		case 'B':
			o.backend = optarg;
			break;
		default:
			usage();
		}
	}
	if (config == NULL || users == 0 || rounds == 0 || optind != argc)
		usage();
	if (index == UINT64_MAX)
		index = users / 2;
	if (index >= users)
		usage();
	bu_user_name(index, name);
	o.user = name;
	put_ns = calloc(rounds, sizeof(*put_ns));
	first_ns = calloc(rounds, sizeof(*first_ns));
	first_cpu = calloc(rounds, sizeof(*first_cpu));
	same_ns = calloc(rounds * (unchanged > 0 ? unchanged : 1),
			 sizeof(*same_ns));
	if (put_ns == NULL || first_ns == NULL || first_cpu == NULL ||
	    same_ns == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto out;
	}
	/* A writer process that died is reported, not a SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	/* The process first, so that it inherits no context. */
	if (writer_start(&writer, process, config, &o, users) != 0)
		goto out;
	if (kw_open(&reader, config) != KW_OK) {
		fprintf(stderr, "%s: %s\n", prog, kw_last_error());
		goto out;
	}
	/* The reader has the file loaded, as a running service has. */
	bu_key_value(index, value);
	for (int k = 0; k < 3; k++)
		if (timed_resolve(reader, &o, value, &same_ns[0], NULL) != 0)
			goto out;
	for (uint64_t r = 0; r < rounds; r++) {
		/* A value no user of the store has: users + 1 + r. */
		bu_key_value(users + 1 + r, value);
		if (writer_put(&writer, &o, users, r, &put_ns[r]) != 0 ||
		    timed_resolve(reader, &o, value, &first_ns[r],
				  &first_cpu[r]) != 0)
			goto out;
		for (uint64_t k = 0; k < unchanged; k++)
			if (timed_resolve(reader, &o, value,
					  &same_ns[r * unchanged + k],
					  NULL) != 0)
				goto out;
	}
	if (writer_stop(&writer) != 0) {
		fprintf(stderr, "%s: the writer process failed\n", prog);
		goto out;
	}
	printf("{\"bench\": \"reload\", \"users\": %" PRIu64 ", \"rounds\": %"
	       PRIu64 ", \"writer\": \"%s\", ", users, rounds,
	       process ? "process" : "context");
	bu_json_str(stdout, "user", name);
	json_ns("put_ms", put_ns, rounds, 1e6);
	json_ns("first_ms", first_ns, rounds, 1e6);
	json_ns("first_cpu_ms", first_cpu, rounds, 1e6);
	json_ns("unchanged_ns", same_ns, rounds * unchanged, 1.0);
	printf("}\n");
	ret = 0;
out:
	explicit_bzero(value, sizeof(value));
	(void)writer_stop(&writer);
	kw_close(reader);
	free(put_ns);
	free(first_ns);
	free(first_cpu);
	free(same_ns);
	return ret;
}
