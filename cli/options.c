/*
 * options.c - the one place keyway(1) reads its command line: the options
 * each command lists in its table, the operands after them, and what the
 * commands make of them all alike (the request, the administrator's
 * actor).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Room for a command's options and the global ones it also takes. */
#define MAX_SHORTOPTS 32
#define MAX_LONGOPTS 32

/* Long options without a short form get values outside the char range. */
#define LONG_ONLY 256

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One write, so that the line cannot interleave with another. */
	if (cmd)
		fprintf(stderr, "keyway: %s: %s (try 'keyway %s --help')\n",
			cmd, msg, cmd);
	else
		fprintf(stderr, "keyway: %s (try 'keyway --help')\n", msg);
	return EXIT_USAGE;
}

static bool is_short_option(const char *shortopts, int ch)
{
	return ch > 0 && ch < 256 && ch != ':' && ch != '+' &&
	       strchr(shortopts, ch) != NULL;
}

/*
 * Turn getopt's '?' or ':' into our own message.  getopt_long() leaves
 * optopt 0 for an unknown long option, the option's value for a long option
 * given an argument it does not take or missing one it needs, and the
 * character for a short option; in the long cases argv[optind - 1] is the
 * option as typed.
 */
static int option_error(const char *cmd, int c, char **argv,
			const char *shortopts)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";
	int len = (int)strcspn(arg, "=");

	if (c == ':') {
		if (strncmp(arg, "--", 2) == 0)
			return cli_usage_error(cmd,
					       "option \"%.*s\" needs an "
					       "argument", len, arg);
		return cli_usage_error(cmd, "option \"-%c\" needs an argument",
				       optopt);
	}
	if (optopt == 0)
		return cli_usage_error(cmd, "unknown option \"%.*s\"", len,
				       arg);
	if (optopt >= 256 || is_short_option(shortopts, optopt))
		return cli_usage_error(cmd, "option \"%.*s\" takes no argument",
				       len, arg);
	return cli_usage_error(cmd, "unknown option \"-%c\"", optopt);
}

static int take_value(const char *cmd, const char *opt, const char **field)
{
	if (*optarg == '\0')
		return cli_usage_error(cmd, "empty value for %s", opt);
	*field = optarg;
	return GO_ON;
}

/* The longest user, org or owner name, and key name (libkeyway's). */
#define IDENTITY_MAX 256
#define KEY_NAME_MAX 128
/* The longest provider name, and the longest one a message repeats. */
#define PROVIDER_MAX 64

/*
 * Whether a message may repeat s, typed where something else was meant:
 * only when it reads as a word mistyped ("Anthropic"), at most 24 letters,
 * '-', '_', '.' and blanks.  What was typed there may be a key (and keys
 * hold digits), or hold what a terminal acts on.
 */
static bool reads_as_word(const char *s)
{
	size_t n = strlen(s);

	return n > 0 && n <= 24 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyz"
			 "ABCDEFGHIJKLMNOPQRSTUVWXYZ-_. ") == n;
}

/*
 * Why name cannot be an option's or operand's value of kind, or NULL:
 * the rules of libkeyway (keyway(1), Names), checked here so that the
 * command says so before anything is opened or any key is read.  Control
 * characters and the like are kw_name_check()'s, which says where.
 */
static const char *name_flaw(const char *what, const char *name,
			     enum cli_option_kind kind, char *buf,
			     size_t size)
{
	size_t len = strlen(name), at;
	const char *msg;

	if (len == 0)
		return "it is empty";
	if (kw_name_check(what, name) != KW_OK) {
		/* "invalid WHAT: why (at byte N)": keep the why. */
		msg = kw_last_error();
		at = strlen("invalid ") + strlen(what) + strlen(": ");
		if (strlen(msg) > at)
			msg += at;
		snprintf(buf, size, "%s", msg);
		return buf;
	}
	switch (kind) {
	case CLI_IDENTITY:
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			return "it may not be \".\" or \"..\"";
		at = strcspn(name, " /\\");
		if (name[at] != '\0') {
			snprintf(buf, size, "it holds %s (at byte %zu); a "
				 "name has no blanks or slashes",
				 name[at] == ' ' ? "a space" :
				 name[at] == '/' ? "a '/'" : "a '\\'",
				 at + 1);
			return buf;
		}
		if (len > IDENTITY_MAX) {
			snprintf(buf, size, "it is longer than %d bytes",
				 IDENTITY_MAX);
			return buf;
		}
		return NULL;
	case CLI_PROVIDER:
		for (at = 0; at < len; at++) {
			char c = name[at];

			if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
				continue;
			if (at > 0 && (c == '-' || c == '_' || c == '.'))
				continue;
			return "a provider is lower-case letters, digits, "
			       "'-', '_' and '.', and starts with a letter "
			       "or digit";
		}
		if (len > PROVIDER_MAX) {
			snprintf(buf, size, "it is longer than %d characters",
				 PROVIDER_MAX);
			return buf;
		}
		return NULL;
	default:
		if (strcmp(what, "--name") == 0 && len > KEY_NAME_MAX) {
			snprintf(buf, size, "it is longer than %d bytes",
				 KEY_NAME_MAX);
			return buf;
		}
		return NULL;
	}
}

int cli_check_name(const char *cmd, const char *what, const char *name,
		   enum cli_option_kind kind)
{
	char buf[256];
	const char *why = name_flaw(what, name, kind, buf, sizeof(buf));

	if (why == NULL)
		return GO_ON;
	if (kind != CLI_PROVIDER)
		return cli_usage_error(cmd, "invalid %s: %s", what, why);
	if (!reads_as_word(name))
		return cli_usage_error(cmd, "invalid provider: %s", why);
	return cli_usage_error(cmd, "invalid provider \"%s\": %s", name, why);
}

/* An option that names something: a name keyway would refuse is a usage
 * error here, before anything is opened. */
static int take_name(const char *cmd, const char *opt,
		     enum cli_option_kind kind, const char **field)
{
	*field = optarg;
	return cli_check_name(cmd, opt, optarg, kind);
}

static int take_scope(const char *cmd, const char *opt, kw_scope *scope)
{
	if (*optarg == '\0')
		return cli_usage_error(cmd, "empty value for %s", opt);
	if (strcmp(optarg, "user") == 0)
		*scope = KW_SCOPE_USER;
	else if (strcmp(optarg, "org") == 0)
		*scope = KW_SCOPE_ORG;
	else if (strcmp(optarg, "system") == 0)
		*scope = KW_SCOPE_SYSTEM;
	else
		return cli_usage_error(cmd, "unknown scope \"%s\" (user, org "
				       "or system)", optarg);
	return GO_ON;
}

/* --due[=DAYS]: a day count small enough to turn into seconds. */
static int take_days(const char *cmd, const char *opt, int64_t *days)
{
	unsigned long long v;
	char *end;

	if (!optarg) {
		*days = DUE_DAYS_DEFAULT;
		return GO_ON;
	}
	errno = 0;
	v = strtoull(optarg, &end, 10);
	if (*optarg < '0' || *optarg > '9' || *end != '\0' || errno != 0 ||
	    v > (unsigned long long)(INT64_MAX / SECONDS_PER_DAY))
		return cli_usage_error(cmd, "%s: \"%s\" is not a number of "
				       "days", opt, optarg);
	*days = (int64_t)v;
	return GO_ON;
}

/* Store optarg where option o says; messages name o as "-o" or "--name". */
static int take(const char *cmd, const struct cli_option *o)
{
	char opt[64];

	if (o->short_name)
		snprintf(opt, sizeof(opt), "-%c", o->short_name);
	else
		snprintf(opt, sizeof(opt), "--%s", o->name);
	switch (o->kind) {
	case CLI_FLAG:
		*o->to.flag = true;
		return GO_ON;
	case CLI_VALUE:
		return take_value(cmd, opt, o->to.text);
	case CLI_NAME:
	case CLI_IDENTITY:
	case CLI_PROVIDER:
		return take_name(cmd, opt, o->kind, o->to.text);
	case CLI_SCOPE:
		return take_scope(cmd, opt, o->to.scope);
	case CLI_DAYS:
		return take_days(cmd, opt, o->to.days);
	case CLI_LIST:
		o->to.list->v[o->to.list->n++] = optarg;
		return GO_ON;
	}
	return GO_ON;
}

/* getopt's value for option i of a table. */
static int option_val(const struct cli_option *o, size_t i)
{
	return o->short_name ? o->short_name : LONG_ONLY + (int)i;
}

static int option_has_arg(const struct cli_option *o)
{
	switch (o->kind) {
	case CLI_FLAG:
		return no_argument;
	case CLI_DAYS:
		return optional_argument;
	default:
		return required_argument;
	}
}

/*
 * getopt_long()'s view of opts, with -c/--config and -h/--help, which
 * every command also takes after its name (`keyway get x -c FILE`; exec
 * only before its CMD).  "+" makes options end at the first operand; ":"
 * reports a missing argument apart from an unknown option.
 */
static void getopt_tables(const struct cli_option *opts, bool in_order,
			  char *shorts, struct option *longs)
{
	size_t i, n = 0, s;

	s = (size_t)sprintf(shorts, "%s:c:", in_order ? "+" : "");
	for (i = 0; opts[i].name != NULL && n < MAX_LONGOPTS - 3; i++) {
		longs[n++] = (struct option){ opts[i].name,
					      option_has_arg(&opts[i]), NULL,
					      option_val(&opts[i], i) };
		if (opts[i].short_name && s < MAX_SHORTOPTS - 4) {
			shorts[s++] = opts[i].short_name;
			if (opts[i].kind != CLI_FLAG)
				shorts[s++] = ':';
		}
	}
	shorts[s++] = 'h';
	shorts[s] = '\0';
	longs[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	longs[n++] = (struct option){ "config", required_argument, NULL, 'c' };
	longs[n] = (struct option){ NULL, 0, NULL, 0 };
}

static const struct cli_option *find_option(const struct cli_option *opts,
					    int c)
{
	size_t i;

	for (i = 0; opts[i].name != NULL; i++) {
		if (option_val(&opts[i], i) == c)
			return &opts[i];
	}
	return NULL;
}

int cli_parse(const struct command *cmd, int argc, char **argv,
	      const struct cli_option *opts, struct cli_args *args)
{
	char shorts[MAX_SHORTOPTS];
	struct option longs[MAX_LONGOPTS];
	const struct cli_option *o;
	int c, rc;

	getopt_tables(opts, args->in_order, shorts, longs);
	optind = 0; /* glibc: start afresh, re-reading shortopts' flags */
	while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
		if (c == 'h') {
			cli_print_usage(cmd->name);
			return EXIT_OK;
		}
		if (c == 'c')
			rc = take_value(cmd->name, "-c", &args->config);
		else if ((o = find_option(opts, c)) != NULL)
			rc = take(cmd->name, o);
		else
			return option_error(cmd->name, c, argv, shorts);
		if (rc != GO_ON)
			return rc;
	}
	args->pos = argv + optind;
	args->npos = argc - optind;
	return GO_ON;
}

int cli_parse_global(int argc, char **argv, const char **config,
		     int *command)
{
	static const char shortopts[] = "+:c:hV";
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (*optarg == '\0')
				return cli_usage_error(NULL,
						       "empty value for -c");
			*config = optarg;
			break;
		case 'h':
			cli_print_overview();
			return EXIT_OK;
		case 'V':
			printf("keyway %s\n", kw_version());
			return EXIT_OK;
		default:
			return option_error(NULL, c, argv, shortopts);
		}
	}
	if (optind >= argc)
		return cli_usage_error(NULL, "missing COMMAND");
	*command = optind;
	return GO_ON;
}

int cli_operands(const char *cmd, const struct cli_args *args, int min,
		 const char *const *names)
{
	int i, max = 0;

	while (names && names[max])
		max++;
	if (args->npos < min) {
		const char *missing = "argument";

		if (names != NULL && args->npos < max)
			missing = names[args->npos];
		return cli_usage_error(cmd, "missing %s", missing);
	}
	if (args->npos > max && reads_as_word(args->pos[max]))
		return cli_usage_error(cmd, "unexpected argument \"%s\"",
				       args->pos[max]);
	if (args->npos > max)
		return cli_usage_error(cmd, "unexpected argument %d (not "
				       "repeated: it may be a key)", max + 1);
	for (i = 0; i < args->npos; i++) {
		if (*args->pos[i] == '\0')
			return cli_usage_error(cmd, "empty %s", names[i]);
	}
	return GO_ON;
}

int cli_parse_operands(const struct command *cmd, int argc, char **argv,
		       const struct cli_option *opts, struct cli_args *args,
		       int min, const char *const *names)
{
	int rc = cli_parse(cmd, argc, argv, opts, args);

	if (rc != GO_ON)
		return rc;
	return cli_operands(cmd->name, args, min, names);
}

kw_status cli_open_request(const struct cli_args *args, kw_ctx **ctx,
			   kw_request *req)
{
	req->provider = args->npos > 0 ? args->pos[0] : NULL;
	return kw_open(ctx, args->config);
}

/*
 * The CLI manages keys as the administrator of the host: whoever may read
 * keyway.conf and its master key may change any key anyway.  The actor is
 * named after the real uid, for the audit log.  NULL only when out of
 * memory.
 */
static char *real_user_name(void)
{
	uid_t uid = getuid();
	struct passwd pw, *found = NULL;
	long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 ? (size_t)hint : 1024;
	char *buf = NULL, *grown, *name = NULL;
	int err;

	for (;;) {
		grown = realloc(buf, size);
		if (!grown)
			goto out;
		buf = grown;
		err = getpwuid_r(uid, &pw, buf, size, &found);
		if (err != ERANGE || size >= 1024 * 1024)
			break;
		size *= 2;
	}
	if (err == 0 && found && found->pw_name && *found->pw_name)
		name = strdup(found->pw_name);
	else if (asprintf(&name, "uid %lu", (unsigned long)uid) < 0)
		name = NULL;
out:
	free(buf);
	return name;
}

int cli_open_as_admin(const char *cmd, const struct cli_args *args,
		      kw_ctx **ctx, kw_actor *actor, char **user)
{
	kw_status st;

	*user = real_user_name();
	if (!*user) {
		fprintf(stderr, "keyway: %s: out of memory\n", cmd);
		return EXIT_ERR;
	}
	actor->user = *user;
	actor->role = KW_ROLE_SYSADMIN;
	st = kw_open(ctx, args->config);
	if (st != KW_OK)
		return cli_lib_error(st);
	return GO_ON;
}
