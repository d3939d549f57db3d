/*
 * spawn.c - how long commands take from start to exit, measured side by
 * side.
 *
 *     spawn -n ROUNDS LABEL CMD [ARG]... [::: LABEL CMD [ARG]...]...
 *
 * Runs every command once to warm caches (not counted), then ROUNDS
 * rounds of each command in turn, starting each round with the next
 * command so that none always runs first.  A command runs with standard
 * input, output and error on /dev/null (what it prints is not measured,
 * and is never seen: it may be a key) and must exit 0.  The time is from
 * posix_spawn() to waitpid().  Prints one JSON line: milliseconds per run,
 * per label.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchutil.h"

extern char **environ;

static const char *prog = "spawn";

struct command {
	const char *label;
	char **argv;   /* NULL-terminated, inside the program's argv */
	double *ms;
};

/* Run argv once; its time in ms, or a negative value on failure. */
static double run(char **argv)
{
	posix_spawn_file_actions_t fa;
	uint64_t t0, t1;
	pid_t pid;
	int status, rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	t0 = bu_now_ns();
	rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0) {
		fprintf(stderr, "%s: cannot run %s: %s\n", prog, argv[0],
			strerror(rc));
		return -1;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	t1 = bu_now_ns();
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "%s: %s failed (status %d)\n", prog, argv[0],
			status);
		return -1;
	}
	return (double)(t1 - t0) / 1e6;
}

int main(int argc, char **argv)
{
	struct command cmds[16];
	size_t ncmds = 0, rounds = 0;
	int i = 1;

	if (argc > 2 && strcmp(argv[1], "-n") == 0) {
		rounds = (size_t)bu_count(prog, "-n", argv[2]);
		i = 3;
	}
	while (i < argc && ncmds < sizeof(cmds) / sizeof(cmds[0])) {
		struct command *c = &cmds[ncmds];

		c->label = argv[i++];
		c->argv = &argv[i];
		while (i < argc && strcmp(argv[i], ":::") != 0)
			i++;
		if (i < argc)
			argv[i++] = NULL; /* ends this command's argv */
		if (c->argv[0] == NULL)
			break;
		ncmds++;
	}
	if (rounds == 0 || ncmds == 0 || i < argc) {
		fprintf(stderr, "usage: %s -n ROUNDS LABEL CMD [ARG]... "
			"[::: LABEL CMD [ARG]...]...\n", prog);
		return 2;
	}
	for (size_t k = 0; k < ncmds; k++) {
		cmds[k].ms = calloc(rounds, sizeof(double));
		if (cmds[k].ms == NULL || run(cmds[k].argv) < 0)
			return 1;
	}
	for (size_t r = 0; r < rounds; r++) {
		for (size_t j = 0; j < ncmds; j++) {
			struct command *c = &cmds[(r + j) % ncmds];

			c->ms[r] = run(c->argv);
			if (c->ms[r] < 0)
				return 1;
		}
	}
	printf("{\"bench\": \"spawn\", \"rounds\": %zu, \"commands\": {",
	       rounds);
	for (size_t k = 0; k < ncmds; k++) {
		printf("%s", k > 0 ? ", " : "");
		bu_json_list(stdout, cmds[k].label, cmds[k].ms, rounds);
	}
	printf("}}\n");
	return 0;
}
