/*
 * main.c - the keyway(1) command: resolve, explain and export API keys
 * through the chains of keyway.conf(5), store and manage the keys of its
 * backends, check a configuration, make a master key.  Uses only the public
 * interface <keyway/keyway.h>.
 *
 * This file sets the process up and hands the command line to the command
 * it names; each command lives in a cmd_*.c file, its help in help.c.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"

/* Each has its synopsis and help in help.c, whose order the overview
 * shows. */
static const struct command commands[] = {
	{ "get", cmd_get },
	{ "explain", cmd_explain },
	{ "exec", cmd_exec },
	{ "put", cmd_put },
	{ "rotate", cmd_put },
	{ "enable", cmd_key_state },
	{ "disable", cmd_key_state },
	{ "rm", cmd_key_state },
	{ "ls", cmd_ls },
	{ "usage", cmd_usage },
	{ "check", cmd_check },
	{ "init", cmd_init },
	{ "keygen", cmd_keygen },
	{ "rekey", cmd_rekey },
	{ "help", cmd_help },
};

/* SIGPIPE and SIGXFSZ as the caller left them: restored for the command
 * exec runs. */
static struct sigaction saved_sigpipe, saved_sigxfsz;

void cli_restore_sigpipe(void)
{
	sigaction(SIGPIPE, &saved_sigpipe, NULL);
	sigaction(SIGXFSZ, &saved_sigxfsz, NULL);
}

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

/* Keep secrets out of core dumps and away from ptrace by the same user. */
static int harden(void)
{
	struct rlimit none = { 0, 0 };

	/*
	 * A descriptor 0-2 left closed by the caller would be handed to the
	 * next file opened, and a key printed "to stdout" would land in it.
	 * Fill the gap with /dev/null; stdout read-only, so that writing to
	 * a closed stdout still fails as it would have (EBADF).
	 */
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) == -1 &&
		    open("/dev/null", fd == 2 ? O_WRONLY : O_RDONLY) != fd) {
			fprintf(stderr, "keyway: cannot open /dev/null\n");
			return -1;
		}
	}

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 ||
	    setrlimit(RLIMIT_CORE, &none) != 0) {
		fprintf(stderr, "keyway: cannot disable core dumps: %s\n",
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Output that did not arrive is a failure, whatever the command says. */
static int finish(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "keyway: write error: %s\n", strerror(errno));
		return EXIT_ERR;
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct sigaction ignore = { .sa_handler = SIG_IGN };
	const struct command *cmd;
	const char *config = NULL;
	int rc, i;

	if (harden() != 0)
		return EXIT_ERR;
	/* A closed pipe is a write error to report, not a silent death. */
	sigemptyset(&ignore.sa_mask);
	sigaction(SIGPIPE, &ignore, &saved_sigpipe);
	/* A file past RLIMIT_FSIZE is a write error (EFBIG) to report, and
	 * SQLite's to roll back, not a death half-way through a write. */
	sigaction(SIGXFSZ, &ignore, &saved_sigxfsz);

	rc = cli_parse_global(argc, argv, &config, &i);
	if (rc != GO_ON)
		return finish(rc);
	cmd = find_command(argv[i]);
	if (!cmd)
		return cli_usage_error(NULL, "unknown command \"%s\"", argv[i]);
	return finish(cmd->run(cmd, argc - i, argv + i, config));
}
