/*
 * help.c - the help of keyway(1) as data: for each command its synopsis,
 * its line in the overview and the rest of `keyway COMMAND --help`, in the
 * order of the overview; and the help command that shows them.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <string.h>

#include "cli.h"

struct help {
	const char *name;
	const char *synopsis; /* after "keyway " */
	const char *summary;  /* one line for the overview */
	const char *text;     /* the rest of `keyway COMMAND --help` */
};

#define HELP_REQUEST_OPTIONS \
	"      --user=U      resolve on behalf of user U\n" \
	"      --org=O       resolve for organization O\n" \
	"      --chain=C     walk chain C instead of \"default\"\n"

#define HELP_HELP_OPTION \
	"  -h, --help        show this help and exit\n"

#define HELP_KEY_OPTIONS \
	"      --scope=S     user, org or system; must be BACKEND's scope, " \
	"which is\n" \
	"                    the default\n" \
	"      --owner=O     the user or organization whose key it is; " \
	"needed for\n" \
	"                    user and org keys\n"

#define HELP_KEY_ACTOR \
	"Acts as the administrator of the host, who may manage every key.\n"

static const struct help helps[] = {
	{
		"get",
		"get PROVIDER [--user U] [--org O] [--chain C] [--reveal]",
		"print the key a request resolves to",
		"Resolve the key for PROVIDER and print it on standard "
		"output.\n"
		"On a terminal the key is masked unless --reveal is given.\n"
		"\n"
		"Options:\n"
		HELP_REQUEST_OPTIONS
		"      --reveal      print the whole key even on a terminal\n"
		HELP_HELP_OPTION
	},
	{
		"explain",
		"explain PROVIDER [--user U] [--org O] [--chain C] [--json]",
		"show step by step how a request resolves",
		"Show how a request for PROVIDER resolves: every chain entry "
		"asked, what it\n"
		"answered and what the chain did next.  The key itself is "
		"never shown.\n"
		"Exits with the status the resolution would have had.\n"
		"\n"
		"Options:\n"
		HELP_REQUEST_OPTIONS
		"      --json        print the trace as JSON (see keyway(1))\n"
		HELP_HELP_OPTION
	},
	{
		"exec",
		"exec [--user U] [--org O] [--chain C] -p PROVIDER[=VAR]... "
		"-- CMD [ARGS...]",
		"run a command with resolved keys in its environment",
		"Resolve the key of every PROVIDER, then run CMD with each key "
		"in its\n"
		"environment as VAR.  VAR defaults to PROVIDER in upper case, "
		"with '-' and\n"
		"'.' as '_', followed by _API_KEY (\"anthropic\" gives "
		"ANTHROPIC_API_KEY).\n"
		"Nothing runs unless every key resolves.  Exits 126 if CMD "
		"cannot be run,\n"
		"127 if it is not found, else with CMD's own status.\n"
		"\n"
		"Options:\n"
		"  -p, --provider=PROVIDER[=VAR]\n"
		"                    put the key for PROVIDER in $VAR; may be "
		"repeated\n"
		HELP_REQUEST_OPTIONS
		HELP_HELP_OPTION
	},
	{
		"put",
		"put BACKEND PROVIDER [--scope S] [--owner O] [--name N]",
		"store a new key, read from standard input",
		"Store a new key for PROVIDER in BACKEND, sealed with the "
		"master key.  The key\n"
		"is read from standard input, never from the command line: "
		"on a terminal it\n"
		"is prompted for without echo, otherwise all of standard "
		"input (at most\n"
		"64 KiB) is read and one trailing newline dropped.  Fails if "
		"BACKEND already\n"
		"holds a key for this owner and PROVIDER: see rotate.\n"
		HELP_KEY_ACTOR
		"\n"
		"Options:\n"
		HELP_KEY_OPTIONS
		"      --name=N      label the key N\n"
		HELP_HELP_OPTION
	},
	{
		"rotate",
		"rotate BACKEND PROVIDER [--scope S] [--owner O] [--name N]",
		"replace a key with a new one, read from standard input",
		"Replace the key for PROVIDER in BACKEND with a new one, read "
		"from standard\n"
		"input as put reads it.  Fails if there is no key to replace.  "
		"The key keeps\n"
		"its name unless --name is given.\n"
		HELP_KEY_ACTOR
		"\n"
		"Options:\n"
		HELP_KEY_OPTIONS
		"      --name=N      label the key N instead\n"
		HELP_HELP_OPTION
	},
	{
		"enable",
		"enable BACKEND PROVIDER [--scope S] [--owner O]",
		"hand out a disabled key again",
		"Enable the key for PROVIDER in BACKEND, so that requests "
		"resolve to it again.\n"
		HELP_KEY_ACTOR
		"\n"
		"Options:\n"
		HELP_KEY_OPTIONS
		HELP_HELP_OPTION
	},
	{
		"disable",
		"disable BACKEND PROVIDER [--scope S] [--owner O]",
		"stop handing out a key, without deleting it",
		"Disable the key for PROVIDER in BACKEND: it stays stored, but "
		"BACKEND answers\n"
		"\"denied\" for it until it is enabled again.\n"
		HELP_KEY_ACTOR
		"\n"
		"Options:\n"
		HELP_KEY_OPTIONS
		HELP_HELP_OPTION
	},
	{
		"rm",
		"rm BACKEND PROVIDER [--scope S] [--owner O]",
		"delete a key",
		"Delete the key for PROVIDER from BACKEND: the record and its "
		"bytes are erased\n"
		"from the store.  This cannot be undone.\n"
		HELP_KEY_ACTOR
		"\n"
		"Options:\n"
		HELP_KEY_OPTIONS
		HELP_HELP_OPTION
	},
	{
		"ls",
		"ls [BACKEND] [--owner O] [--json] [--due[=DAYS]]",
		"list the stored keys, masked",
		"List the keys of BACKEND, or of every backend that stores "
		"keys, one per line\n"
		"under the header BACKEND SCOPE OWNER PROVIDER NAME STATE KEY "
		"USES LAST-USED\n"
		"ROTATED.  Keys are masked, dates are UTC, and OWNER and NAME "
		"are \"-\" when\n"
		"there is none.\n"
		"\n"
		"Options:\n"
		"      --owner=O     only the keys of user or organization O\n"
		"      --json        print a JSON array of objects instead, "
		"with times in\n"
		"                    ISO 8601 and null for none\n"
		"      --due[=DAYS]  only the keys last set more than DAYS days "
		"ago (default\n"
		"                    90): those due for rotation\n"
		HELP_HELP_OPTION
	},
	{
		"usage",
		"usage [--since WHEN] [--until WHEN] [--user U] [--org O] "
		"[--backend B] [--json] [--alerts]",
		"summarise the usage log, or flag unusual use",
		"Summarise the usage log of keyway.ledger over a period: one "
		"line per user,\n"
		"organization, backend and provider, sorted by user, backend "
		"and provider,\n"
		"under the header USER ORG BACKEND PROVIDER ADMITTED DENIED "
		"REFUNDED LAST.\n"
		"LAST is the time of the latest request, times are UTC, and "
		"USER and ORG are\n"
		"\"-\" when there is none.\n"
		"WHEN is a date (2025-01-31, from midnight UTC), a UTC "
		"time\n"
		"(2025-01-31T14:00:00Z), or a duration back from now (30m, "
		"24h, 7d).\n"
		"Acts as the administrator of the host, who sees every "
		"request.\n"
		"\n"
		"Options:\n"
		"      --since=WHEN  from WHEN on (default: the start of today, "
		"UTC)\n"
		"      --until=WHEN  up to WHEN, excluded (default: no end)\n"
		"      --user=U      only the requests of user U\n"
		"      --org=O       only the requests of organization O\n"
		"      --backend=B   only the requests charged to backend B\n"
		"      --json        print the requests of the period as a JSON "
		"array of\n"
		"                    objects instead, with times in ISO 8601 "
		"and null for\n"
		"                    none\n"
		"      --alerts      list instead the users whose admitted "
		"requests today\n"
		"                    exceed twice their daily mean over the 7 "
		"days before,\n"
		"                    under the header USER TODAY MEAN-7D RATIO "
		"(\"new\" when\n"
		"                    the mean is 0), busiest first, or with "
		"--json as an\n"
		"                    array of objects; ignores --since and "
		"--until\n"
		HELP_HELP_OPTION
	},
	{
		"check",
		"check [--json]",
		"check the configuration, backends and file permissions",
		"Load the configuration and every module, open and "
		"health-check every\n"
		"backend, and look at the permissions of every file involved.  "
		"Each problem\n"
		"is printed on standard error as \"file:line: what is wrong\"; "
		"\"ok\" is\n"
		"printed when there is none.  It creates nothing: a store, "
		"ledger or audit\n"
		"file that does not exist is a problem (keyway init makes "
		"them), and so is\n"
		"a store or ledger it cannot write to.\n"
		"\n"
		"Options:\n"
		"      --json        print {\"ok\", \"problems\"} as JSON on "
		"standard output\n"
		HELP_HELP_OPTION
	},
	{
		"init",
		"init",
		"create the stores, ledger and audit file the configuration "
		"names",
		"Create every file the configuration names that does not "
		"exist yet: each\n"
		"sqlite store and the ledger (mode 0600, with their schema), "
		"and the audit\n"
		"file (mode 0600).  Files that exist are left as they are, so "
		"running it\n"
		"again creates nothing.  Prints \"created PATH (WHO)\" for each "
		"file made;\n"
		"problems go to standard error as check prints them.  Run it "
		"as the user\n"
		"the applications run as, once, before keyway check.\n"
		"\n"
		"Options:\n"
		HELP_HELP_OPTION
	},
	{
		"keygen",
		"keygen [-o FILE]",
		"make a new random master key",
		"Make a new random 256-bit master key and print it as 64 "
		"hexadecimal\n"
		"characters, as master_key { source = \"env\"; }, "
		"{ source = \"file\"; }\n"
		"and { source = \"credential\"; } read it.\n"
		"\n"
		"Options:\n"
		"  -o, --output=FILE write the key to FILE instead, created "
		"with mode 0600;\n"
		"                    FILE must not exist\n"
		HELP_HELP_OPTION
	},
	{
		"rekey",
		"rekey BACKEND",
		"re-seal the keys of a backend under the current master key",
		"Re-seal every key of BACKEND under the current master key, in "
		"one transaction.\n"
		"Keys keep resolving throughout, as long as the old master key "
		"is listed in\n"
		"keyway.old_master_keys.\n"
		"\n"
		"Options:\n"
		HELP_HELP_OPTION
	},
	{
		"help",
		"help [COMMAND]",
		"show this overview or the usage of a command",
		"Show the list of commands, or the usage of COMMAND.\n"
	},
};

static const struct help *find_help(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		if (strcmp(helps[i].name, name) == 0)
			return &helps[i];
	}
	return NULL;
}

bool cli_print_usage(const char *name)
{
	const struct help *h = find_help(name);

	if (!h)
		return false;
	printf("Usage: keyway %s\n%s", h->synopsis, h->text);
	return true;
}

void cli_print_overview(void)
{
	size_t i;

	printf("Usage: keyway [-c CONFIG] COMMAND [ARGS]\n"
	       "Resolve API keys through the chains declared in "
	       "keyway.conf(5), and manage\n"
	       "the keys its backends store.\n"
	       "\n"
	       "Commands:\n");
	for (i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
		printf("  %-9s %s\n", helps[i].name, helps[i].summary);
	printf("\n"
	       "Options:\n"
	       "  -c, --config=FILE read FILE instead of %s\n"
	       "  -h, --help        show this help and exit\n"
	       "  -V, --version     show the version and exit\n"
	       "-c may also follow COMMAND (for exec, before CMD).\n"
	       "\n"
	       "Exit status: 0 success, 1 error, 2 usage, 3 not found, "
	       "4 denied,\n"
	       "5 unavailable.\n"
	       "Run 'keyway COMMAND --help' for the options of a command.\n",
	       kw_default_config());
}

int cmd_help(const struct command *cmd, int argc, char **argv,
	     const char *config)
{
	struct cli_option options[] = { CLI_END };
	struct cli_args a = { .config = config };
	int rc;

	rc = cli_parse(cmd, argc, argv, options, &a);
	if (rc != GO_ON)
		return rc;
	if (a.npos == 0) {
		cli_print_overview();
		return EXIT_OK;
	}
	/* No operand check: an empty COMMAND is unknown like any other. */
	if (a.npos > 1)
		return cli_usage_error(cmd->name, "unexpected argument \"%s\"",
				       a.pos[1]);
	if (!cli_print_usage(a.pos[0]))
		return cli_usage_error(NULL, "help: unknown command \"%s\"",
				       a.pos[0]);
	return EXIT_OK;
}
