/*
 * keyway.c - the keyway(1) command: resolve, explain and export API keys
 * through the chains of keyway.conf(5), store and manage the keys of its
 * backends, check a configuration, make a master key.  Uses only the public
 * interface <keyway/keyway.h>.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <search.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <termios.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <keyway/keyway.h>

/* Exit statuses (keyway(1)); 126 and 127 are those of env(1) for exec. */
enum {
	EXIT_OK = 0,
	EXIT_ERR = 1,
	EXIT_USAGE = 2,
	EXIT_NOTFOUND = 3,
	EXIT_DENIED = 4,
	EXIT_UNAVAIL = 5,
	EXIT_CANNOT_RUN = 126,
	EXIT_NO_COMMAND = 127
};

/* Returned by the argument parser when the command should go on. */
#define GO_ON (-1)

#define MASTER_KEY_BYTES 32

/* The most put and rotate read, trailing newline included. */
#define KEY_INPUT_MAX (64 * 1024)

/* What ls --due means without =DAYS. */
#define DUE_DAYS_DEFAULT 90

#define SECONDS_PER_DAY 86400

/* usage --alerts: today against the mean of the days before it. */
#define ALERT_PAST_DAYS 7
#define ALERT_DAYS (ALERT_PAST_DAYS + 1)

/* Every --json output is indented alike. */
#define JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER)

struct command {
	const char *name;
	int (*run)(const struct command *cmd, int argc, char **argv,
		   const char *config);
	const char *synopsis; /* after "keyway " */
	const char *summary;  /* one line for the overview */
	const char *help;     /* the rest of `keyway COMMAND --help` */
};

/* Everything any command accepts; each command reads what it offers. */
struct args {
	const char *user;
	const char *org;
	const char *chain;
	const char *output;
	bool reveal;
	const char **providers; /* -p values, only where the caller allows */
	size_t nproviders;
	kw_scope scope;         /* --scope; KW_SCOPE_NONE: the backend's */
	const char *owner;
	const char *name;
	bool json;
	bool due;               /* --due given */
	int64_t due_days;
	const char *since;      /* usage --since WHEN, as given */
	const char *until;
	const char *backend;    /* usage --backend */
	bool alerts;
	const char *config;     /* -c FILE after the command */
	char **pos;             /* positional arguments */
	int npos;
};

/* Long options without a short form get values outside the char range. */
enum {
	OPT_USER = 256,
	OPT_ORG,
	OPT_CHAIN,
	OPT_REVEAL,
	OPT_SCOPE,
	OPT_OWNER,
	OPT_NAME,
	OPT_JSON,
	OPT_DUE,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_BACKEND,
	OPT_ALERTS
};

#define REQUEST_OPTIONS \
	{ "user", required_argument, NULL, OPT_USER }, \
	{ "org", required_argument, NULL, OPT_ORG }, \
	{ "chain", required_argument, NULL, OPT_CHAIN }, \
	{ "help", no_argument, NULL, 'h' }

/* What the commands that name one stored key accept. */
#define KEY_OPTIONS \
	{ "scope", required_argument, NULL, OPT_SCOPE }, \
	{ "owner", required_argument, NULL, OPT_OWNER }, \
	{ "help", no_argument, NULL, 'h' }

/* SIGPIPE as the caller left it: restored for the command exec runs. */
static struct sigaction saved_sigpipe;

static const struct command *find_command(const char *name);
static void print_overview(void);

static int exit_status(kw_status st)
{
	switch (st) {
	case KW_OK:
		return EXIT_OK;
	case KW_ERR_NOTFOUND:
		return EXIT_NOTFOUND;
	case KW_ERR_DENIED:
		return EXIT_DENIED;
	case KW_ERR_UNAVAIL:
		return EXIT_UNAVAIL;
	default:
		return EXIT_ERR;
	}
}

static const char *str(const char *s)
{
	return s ? s : "";
}

/* Report a library failure; kw_last_error() must be read before any other
 * keyway call. */
static int lib_error(kw_status st)
{
	const char *msg = kw_last_error();

	if (!msg || !*msg)
		msg = kw_status_str(st);
	fprintf(stderr, "keyway: %s\n", msg);
	return exit_status(st);
}

static int usage_error(const char *cmd, const char *fmt, ...) KW_PRINTF(2, 3);

static int usage_error(const char *cmd, const char *fmt, ...)
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
			return usage_error(cmd,
					   "option \"%.*s\" needs an argument",
					   len, arg);
		return usage_error(cmd, "option \"-%c\" needs an argument",
				   optopt);
	}
	if (optopt == 0)
		return usage_error(cmd, "unknown option \"%.*s\"", len, arg);
	if (optopt >= 256 || is_short_option(shortopts, optopt))
		return usage_error(cmd, "option \"%.*s\" takes no argument",
				   len, arg);
	return usage_error(cmd, "unknown option \"-%c\"", optopt);
}

static void print_usage(const struct command *cmd)
{
	printf("Usage: keyway %s\n%s", cmd->synopsis, cmd->help);
}

static int take_value(const char *cmd, const char *opt, const char **field)
{
	if (*optarg == '\0')
		return usage_error(cmd, "empty value for %s", opt);
	*field = optarg;
	return GO_ON;
}

/* An option that names something: a name no terminal should be handed
 * (kw_name_check()) is a usage error here, before anything is opened. */
static int take_name(const char *cmd, const char *opt, const char **field)
{
	int rc = take_value(cmd, opt, field);

	if (rc == GO_ON && kw_name_check(opt, *field) != KW_OK)
		return usage_error(cmd, "%s", kw_last_error());
	return rc;
}

static int take_scope(const char *cmd, kw_scope *scope)
{
	if (*optarg == '\0')
		return usage_error(cmd, "empty value for --scope");
	if (strcmp(optarg, "user") == 0)
		*scope = KW_SCOPE_USER;
	else if (strcmp(optarg, "org") == 0)
		*scope = KW_SCOPE_ORG;
	else if (strcmp(optarg, "system") == 0)
		*scope = KW_SCOPE_SYSTEM;
	else
		return usage_error(cmd, "unknown scope \"%s\" (user, org or "
				   "system)", optarg);
	return GO_ON;
}

/* --due[=DAYS]: a day count small enough to turn into seconds. */
static int take_days(const char *cmd, int64_t *days)
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
		return usage_error(cmd, "--due: \"%s\" is not a number of days",
				   optarg);
	*days = (int64_t)v;
	return GO_ON;
}

/* Room for a command's options and the global ones it also takes. */
#define MAX_SHORTOPTS 32
#define MAX_LONGOPTS 32

/*
 * Parse the options of cmd.  Returns GO_ON, or the exit status when the
 * command is over (help printed, usage error).  getopt_long() only returns
 * what shortopts and longopts offer, so one switch serves every command.
 * Every command also takes the global -c/--config after its name
 * (`keyway get x -c FILE`); exec only before its CMD.
 */
static int parse_args(const struct command *cmd, int argc, char **argv,
		      const char *shortopts, const struct option *longopts,
		      struct args *a)
{
	char shorts[MAX_SHORTOPTS];
	struct option all[MAX_LONGOPTS];
	size_t n, flags;
	int c, rc;

	/* "c:" after the flags ("+", ":") that must come first. */
	flags = strspn(shortopts, "+:");
	snprintf(shorts, sizeof(shorts), "%.*sc:%s", (int)flags, shortopts,
		 shortopts + flags);
	for (n = 0; longopts[n].name != NULL && n < MAX_LONGOPTS - 2; n++)
		all[n] = longopts[n];
	all[n++] = (struct option){ "config", required_argument, NULL, 'c' };
	all[n] = (struct option){ NULL, 0, NULL, 0 };

	optind = 0; /* glibc: start afresh, re-reading shortopts' flags */
	while ((c = getopt_long(argc, argv, shorts, all, NULL)) != -1) {
		rc = GO_ON;
		switch (c) {
		case 'h':
			print_usage(cmd);
			return EXIT_OK;
		case 'c':
			rc = take_value(cmd->name, "-c", &a->config);
			break;
		case OPT_USER:
			rc = take_name(cmd->name, "--user", &a->user);
			break;
		case OPT_ORG:
			rc = take_name(cmd->name, "--org", &a->org);
			break;
		case OPT_CHAIN:
			rc = take_name(cmd->name, "--chain", &a->chain);
			break;
		case OPT_REVEAL:
			a->reveal = true;
			break;
		case OPT_SCOPE:
			rc = take_scope(cmd->name, &a->scope);
			break;
		case OPT_OWNER:
			rc = take_name(cmd->name, "--owner", &a->owner);
			break;
		case OPT_NAME:
			rc = take_name(cmd->name, "--name", &a->name);
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_DUE:
			a->due = true;
			rc = take_days(cmd->name, &a->due_days);
			break;
		case OPT_SINCE:
			rc = take_value(cmd->name, "--since", &a->since);
			break;
		case OPT_UNTIL:
			rc = take_value(cmd->name, "--until", &a->until);
			break;
		case OPT_BACKEND:
			rc = take_name(cmd->name, "--backend", &a->backend);
			break;
		case OPT_ALERTS:
			a->alerts = true;
			break;
		case 'o':
			rc = take_value(cmd->name, "-o", &a->output);
			break;
		case 'p':
			/* Only a caller with somewhere to keep it offers -p. */
			if (!a->providers)
				return option_error(cmd->name, c, argv,
						    shorts);
			a->providers[a->nproviders++] = optarg;
			break;
		default:
			return option_error(cmd->name, c, argv, shorts);
		}
		if (rc != GO_ON)
			return rc;
	}
	a->pos = argv + optind;
	a->npos = argc - optind;
	return GO_ON;
}

/* -c after the command wins over -c before it, as a later option does. */
static const char *config_path(const char *config, const struct args *a)
{
	return a->config != NULL ? a->config : config;
}

static int no_arguments(const struct command *cmd, const struct args *a)
{
	if (a->npos > 0)
		return usage_error(cmd->name, "unexpected argument \"%s\"",
				   a->pos[0]);
	return GO_ON;
}

static int one_provider(const struct command *cmd, const struct args *a)
{
	if (a->npos == 0)
		return usage_error(cmd->name, "missing PROVIDER");
	if (a->npos > 1)
		return usage_error(cmd->name, "unexpected argument \"%s\"",
				   a->pos[1]);
	if (*a->pos[0] == '\0')
		return usage_error(cmd->name, "empty PROVIDER");
	return GO_ON;
}

/*
 * Write a secret and a newline to stdout and make sure it arrived.  Called
 * before anything else is written to stdout: unbuffered, stdio writes
 * straight from buf and keeps no copy of the secret in its own heap buffer.
 */
static int write_secret(const char *buf, size_t len)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (fwrite(buf, 1, len, stdout) != len || putchar('\n') == EOF ||
	    fflush(stdout) != 0) {
		fprintf(stderr, "keyway: write error: %s\n", strerror(errno));
		clearerr(stdout);
		return EXIT_ERR;
	}
	return EXIT_OK;
}

/* The key never left this process: give back what resolving it charged.
 * A refund that fails leaves a charge too many, which is not worth failing
 * the command for. */
static void refund(kw_secret *key)
{
	kw_status st;

	if (!key)
		return;
	st = kw_secret_report(key, KW_UNUSED);
	(void)st;
}

/* Open the configuration and fill a request from the common options; the
 * provider is the first positional argument, if any. */
static kw_status open_request(const char *config, const struct args *a,
			      kw_ctx **ctx, kw_request *req)
{
	req->chain = a->chain;
	req->provider = a->npos > 0 ? a->pos[0] : NULL;
	req->user = a->user;
	req->org = a->org;
	return kw_open(ctx, config_path(config, a));
}

static int cmd_get(const struct command *cmd, int argc, char **argv,
		   const char *config)
{
	static const struct option longopts[] = {
		REQUEST_OPTIONS,
		{ "reveal", no_argument, NULL, OPT_REVEAL },
		{ NULL, 0, NULL, 0 }
	};
	struct args a = { 0 };
	kw_request req = KW_REQUEST_INIT;
	kw_ctx *ctx = NULL;
	kw_secret *key = NULL;
	char masked[64] = "";
	kw_status st;
	int rc;

	rc = parse_args(cmd, argc, argv, ":h", longopts, &a);
	if (rc == GO_ON)
		rc = one_provider(cmd, &a);
	if (rc != GO_ON)
		return rc;

	st = open_request(config, &a, &ctx, &req);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	st = kw_resolve(ctx, &req, &key);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}

	if (isatty(STDOUT_FILENO) && !a.reveal) {
		/* Shown, not handed out: it should cost no quota. */
		kw_mask(kw_secret_value(key), kw_secret_len(key), masked,
			sizeof(masked));
		rc = write_secret(masked, strlen(masked));
		refund(key);
	} else {
		rc = write_secret(kw_secret_value(key), kw_secret_len(key));
		if (rc != EXIT_OK)
			refund(key);
	}
out:
	explicit_bzero(masked, sizeof(masked));
	kw_secret_free(key);
	kw_close(ctx);
	return rc;
}

/* A backend's answer in the words of keyway.conf(5). */
static const char *answer_str(kw_status st)
{
	switch (st) {
	case KW_OK:
		return "found";
	case KW_ERR_NOTFOUND:
		return "notfound";
	case KW_ERR_DENIED:
		return "denied";
	case KW_ERR_UNAVAIL:
		return "unavail";
	default:
		return "error";
	}
}

static void print_identity(const char *name, const char *value)
{
	if (value)
		printf(", %s \"%s\"", name, value);
	else
		printf(", %s -", name);
}

static void print_trace(const kw_trace *t, const kw_request *req)
{
	const kw_trace_step *s;
	const char *summary;
	kw_status result;
	size_t i, n;

	printf("chain \"%s\": provider \"%s\"", str(kw_trace_chain(t)),
	       req->provider);
	print_identity("user", req->user);
	print_identity("org", req->org);
	putchar('\n');

	n = kw_trace_len(t);
	for (i = 0; i < n; i++) {
		s = kw_trace_get(t, i);
		if (!s)
			continue;
		printf("  %u. %s (%s): %s -> %s", s->index, str(s->backend),
		       str(s->module), answer_str(s->status),
		       kw_action_str(s->action));
		if (s->action == KW_ACTION_SKIP)
			printf(" %u", s->skip);
		if (s->detail && *s->detail)
			printf(": %s", s->detail);
		if (s->masked && *s->masked)
			printf(" [%s]", s->masked);
		putchar('\n');
	}

	result = kw_trace_result(t);
	summary = kw_trace_summary(t);
	if (result == KW_OK)
		printf("result: found by %s\n", str(kw_trace_backend(t)));
	else if (summary && *summary)
		printf("result: %s: %s\n", kw_status_str(result), summary);
	else
		printf("result: %s\n", kw_status_str(result));
}

/* A string for JSON: NULL and "" are null. */
static json_t *json_text(const char *s)
{
	return s != NULL && *s != '\0' ? json_string(s) : json_null();
}

/*
 * explain --json: the request, one object per step, the result, in the
 * shape keyway(1) documents.  Like the text, it holds no key: a found key
 * is only ever shown masked.
 */
static int print_trace_json(const kw_trace *t, const kw_request *req)
{
	const kw_trace_step *s;
	kw_status result = kw_trace_result(t);
	json_t *o = NULL, *steps, *step;
	char *text = NULL;
	size_t i, n;
	int rc = EXIT_ERR;

	steps = json_array();
	if (!steps)
		goto out;
	n = kw_trace_len(t);
	for (i = 0; i < n; i++) {
		s = kw_trace_get(t, i);
		if (!s)
			continue;
		step = json_pack("{s:I, s:o, s:o, s:s, s:s, s:o, s:o, s:o}",
				 "entry", (json_int_t)s->index,
				 "backend", json_text(s->backend),
				 "module", json_text(s->module),
				 "status", answer_str(s->status),
				 "action", kw_action_str(s->action),
				 "skip", s->action == KW_ACTION_SKIP
					 ? json_integer(s->skip) : json_null(),
				 "detail", json_text(s->detail),
				 "masked", json_text(s->masked));
		if (!step || json_array_append_new(steps, step) != 0)
			goto out;
	}
	o = json_pack("{s:{s:o, s:s, s:o, s:o}, s:o, s:{s:s, s:o, s:o}}",
		      "request",
		      "chain", json_text(kw_trace_chain(t)),
		      "provider", req->provider,
		      "user", json_text(req->user),
		      "org", json_text(req->org),
		      "steps", steps,
		      "result",
		      "status", answer_str(result),
		      "backend", json_text(kw_trace_backend(t)),
		      "summary", result == KW_OK ? json_null()
				 : json_text(kw_trace_summary(t)));
	steps = NULL; /* o holds it, or json_pack() dropped it */
	if (!o)
		goto out;
	text = json_dumps(o, JSON_FLAGS);
	if (!text)
		goto out;
	puts(text);
	rc = EXIT_OK;
out:
	if (rc != EXIT_OK)
		fprintf(stderr, "keyway: explain: cannot encode the trace as "
			"JSON (out of memory, or a field that is not "
			"UTF-8)\n");
	free(text);
	json_decref(steps);
	json_decref(o);
	return rc;
}

static int cmd_explain(const struct command *cmd, int argc, char **argv,
		       const char *config)
{
	static const struct option longopts[] = {
		REQUEST_OPTIONS,
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 }
	};
	struct args a = { 0 };
	kw_request req = KW_REQUEST_INIT;
	kw_ctx *ctx = NULL;
	kw_trace *t = NULL;
	kw_status st;
	int rc;

	rc = parse_args(cmd, argc, argv, ":h", longopts, &a);
	if (rc == GO_ON)
		rc = one_provider(cmd, &a);
	if (rc != GO_ON)
		return rc;

	st = open_request(config, &a, &ctx, &req);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	st = kw_explain(ctx, &req, &t);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	if (a.json) {
		rc = print_trace_json(t, &req);
		if (rc != EXIT_OK)
			goto out;
	} else {
		print_trace(t, &req);
	}
	rc = exit_status(kw_trace_result(t));
out:
	kw_trace_free(t);
	kw_close(ctx);
	return rc;
}

/* One -p PROVIDER[=VAR] of exec. */
struct export {
	char *provider;
	char *var;
	kw_secret *key;
	char *entry; /* "VAR=key", handed to the command's environment */
	size_t entry_size;
};

static bool valid_var(const char *s)
{
	const char *p;

	if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') ||
	      (*s >= 'a' && *s <= 'z')))
		return false;
	for (p = s + 1; *p; p++) {
		if (!(*p == '_' || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return false;
	}
	return true;
}

/* "open-router" -> "OPEN_ROUTER_API_KEY"; the caller validates it. */
static char *default_var(const char *provider)
{
	static const char suffix[] = "_API_KEY";
	size_t i, len = strlen(provider);
	char *var;

	var = malloc(len + sizeof(suffix));
	if (!var)
		return NULL;
	for (i = 0; i < len; i++) {
		char ch = provider[i];

		if (ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		else if (ch == '-' || ch == '.')
			ch = '_';
		var[i] = ch;
	}
	memcpy(var + len, suffix, sizeof(suffix));
	return var;
}

static int parse_export(const char *cmd, const char *spec, struct export *e)
{
	const char *eq = strchr(spec, '=');
	size_t plen = eq ? (size_t)(eq - spec) : strlen(spec);

	if (plen == 0)
		return usage_error(cmd, "-p \"%s\": missing PROVIDER", spec);
	e->provider = strndup(spec, plen);
	e->var = eq ? strdup(eq + 1) : default_var(spec);
	if (!e->provider || !e->var) {
		fprintf(stderr, "keyway: %s: out of memory\n", cmd);
		return EXIT_ERR;
	}
	if (valid_var(e->var))
		return GO_ON;
	if (eq)
		return usage_error(cmd, "-p \"%s\": \"%s\" is not a valid "
				   "variable name", spec, e->var);
	return usage_error(cmd, "-p \"%s\": no variable name can be made "
			   "from it; use -p %s=VAR", spec, spec);
}

/* Whether environment entry env sets one of the variables exec sets. */
static bool replaced(const char *env, const struct export *ex, size_t n)
{
	size_t i, len = strcspn(env, "=");

	for (i = 0; i < n; i++) {
		if (strlen(ex[i].var) == len &&
		    memcmp(ex[i].var, env, len) == 0)
			return true;
	}
	return false;
}

/*
 * 0 if execvp() would find an executable file for cmd, else the errno it
 * would most likely fail with.
 */
static int runnable(const char *cmd)
{
	const char *path, *p, *end;
	char buf[4096];
	int err = ENOENT;
	struct stat st;

	if (strchr(cmd, '/') != NULL) {
		if (stat(cmd, &st) != 0)
			return errno;
		if (S_ISDIR(st.st_mode))
			return EACCES;
		return access(cmd, X_OK) == 0 ? 0 : errno;
	}
	path = getenv("PATH");
	if (path == NULL)
		path = "/bin:/usr/bin";
	for (p = path; ; p = end + 1) {
		end = strchrnul(p, ':');
		if (snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(end - p), p,
			     end > p ? "/" : "", cmd) < (int)sizeof(buf) &&
		    stat(buf, &st) == 0) {
			if (!S_ISDIR(st.st_mode) && access(buf, X_OK) == 0)
				return 0;
			err = EACCES;
		} else if (errno == EACCES) {
			err = EACCES;
		}
		if (*end == '\0')
			break;
	}
	return err;
}

static int make_entry(struct export *e)
{
	size_t vlen = strlen(e->var), klen = kw_secret_len(e->key);

	e->entry_size = vlen + 1 + klen + 1;
	e->entry = malloc(e->entry_size);
	if (!e->entry)
		return -1;
	memcpy(e->entry, e->var, vlen);
	e->entry[vlen] = '=';
	memcpy(e->entry + vlen + 1, kw_secret_value(e->key), klen);
	e->entry[vlen + 1 + klen] = '\0';
	return 0;
}

static int cmd_exec(const struct command *cmd, int argc, char **argv,
		    const char *config)
{
	static const struct option longopts[] = {
		{ "provider", required_argument, NULL, 'p' },
		REQUEST_OPTIONS,
		{ NULL, 0, NULL, 0 }
	};
	struct args a = { 0 };
	kw_request req = KW_REQUEST_INIT;
	kw_ctx *ctx = NULL;
	struct export *ex = NULL;
	char **envp = NULL;
	size_t i, j, nenv = 0;
	kw_status st;
	int rc, err;

	a.providers = calloc((size_t)argc, sizeof(*a.providers));
	if (!a.providers) {
		fprintf(stderr, "keyway: exec: out of memory\n");
		return EXIT_ERR;
	}
	/* "+": options end at CMD, whose own options are not ours. */
	rc = parse_args(cmd, argc, argv, "+:p:h", longopts, &a);
	if (rc != GO_ON)
		goto out;
	if (a.nproviders == 0) {
		rc = usage_error(cmd->name, "missing -p PROVIDER");
		goto out;
	}
	if (a.npos == 0) {
		rc = usage_error(cmd->name, "missing CMD");
		goto out;
	}

	ex = calloc(a.nproviders, sizeof(*ex));
	if (!ex) {
		fprintf(stderr, "keyway: exec: out of memory\n");
		rc = EXIT_ERR;
		goto out;
	}
	for (i = 0; i < a.nproviders; i++) {
		rc = parse_export(cmd->name, a.providers[i], &ex[i]);
		if (rc != GO_ON)
			goto out;
		for (j = 0; j < i; j++) {
			if (strcmp(ex[i].var, ex[j].var) == 0) {
				rc = usage_error(cmd->name, "variable \"%s\" "
						 "given twice", ex[i].var);
				goto out;
			}
		}
	}

	/* Every key first: nothing runs with half of its environment. */
	st = open_request(config, &a, &ctx, &req);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	for (i = 0; i < a.nproviders; i++) {
		req.provider = ex[i].provider;
		st = kw_resolve(ctx, &req, &ex[i].key);
		if (st != KW_OK) {
			rc = lib_error(st);
			goto out_refund;
		}
	}

	while (environ && environ[nenv])
		nenv++;
	envp = calloc(nenv + a.nproviders + 1, sizeof(*envp));
	if (!envp)
		goto out_nomem;
	/*
	 * The command gets the keys the chains resolved and no other: not a
	 * master key, and not a key a backend would have handed out only
	 * through a chain, its quotas and its audit trail.
	 */
	for (i = 0, j = 0; i < nenv; i++) {
		if (!replaced(environ[i], ex, a.nproviders) &&
		    !kw_reads_env(ctx, environ[i]))
			envp[j++] = environ[i];
	}
	for (i = 0; i < a.nproviders; i++) {
		if (make_entry(&ex[i]) != 0)
			goto out_nomem;
		envp[j++] = ex[i].entry;
	}
	envp[j] = NULL;

	/*
	 * A command that cannot be run gets nothing and costs nothing.  One
	 * that can takes the keys as used: they are freed and the context
	 * closed first, so that their use is counted before the process is
	 * replaced.
	 */
	err = runnable(a.pos[0]);
	if (err != 0) {
		fprintf(stderr, "keyway: exec: %s: %s\n", a.pos[0],
			strerror(err));
		rc = err == ENOENT ? EXIT_NO_COMMAND : EXIT_CANNOT_RUN;
		goto out_refund;
	}
	for (i = 0; i < a.nproviders; i++) {
		kw_secret_free(ex[i].key);
		ex[i].key = NULL;
	}
	kw_close(ctx);
	ctx = NULL;
	sigaction(SIGPIPE, &saved_sigpipe, NULL);
	execvpe(a.pos[0], a.pos, envp);
	err = errno;
	fprintf(stderr, "keyway: exec: %s: %s\n", a.pos[0], strerror(err));
	rc = err == ENOENT ? EXIT_NO_COMMAND : EXIT_CANNOT_RUN;
	goto out;

out_nomem:
	fprintf(stderr, "keyway: exec: out of memory\n");
	rc = EXIT_ERR;
out_refund:
	/* After the error line: a report overwrites kw_last_error(). */
	for (i = 0; i < a.nproviders; i++)
		refund(ex[i].key);
out:
	for (i = 0; ex && i < a.nproviders; i++) {
		if (ex[i].entry)
			explicit_bzero(ex[i].entry, ex[i].entry_size);
		free(ex[i].entry);
		kw_secret_free(ex[i].key);
		free(ex[i].provider);
		free(ex[i].var);
	}
	free(ex);
	free(envp);
	free(a.providers);
	kw_close(ctx);
	return rc;
}

/* ---- key management: put, rotate, enable, disable, rm, ls, rekey ---- */

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

/* Open the configuration and make the actor every management command
 * acts as.  *user holds its name and must be freed. */
static int open_as_admin(const char *cmd, const char *config, kw_ctx **ctx,
			 kw_actor *actor, char **user)
{
	kw_status st;

	*user = real_user_name();
	if (!*user) {
		fprintf(stderr, "keyway: %s: out of memory\n", cmd);
		return EXIT_ERR;
	}
	actor->user = *user;
	actor->role = KW_ROLE_SYSADMIN;
	st = kw_open(ctx, config);
	if (st != KW_OK)
		return lib_error(st);
	return GO_ON;
}

/* BACKEND PROVIDER.  A third argument may be a key typed by mistake: it is
 * refused without being repeated. */
static int backend_and_provider(const struct command *cmd,
				const struct args *a, bool reads_key)
{
	if (a->npos == 0)
		return usage_error(cmd->name, "missing BACKEND");
	if (a->npos == 1)
		return usage_error(cmd->name, "missing PROVIDER");
	if (a->npos > 2) {
		if (reads_key)
			return usage_error(cmd->name, "unexpected argument "
					   "(keys are read from standard "
					   "input, never from the command "
					   "line)");
		return usage_error(cmd->name, "unexpected argument \"%s\"",
				   a->pos[2]);
	}
	if (*a->pos[0] == '\0')
		return usage_error(cmd->name, "empty BACKEND");
	if (*a->pos[1] == '\0')
		return usage_error(cmd->name, "empty PROVIDER");
	return GO_ON;
}

/*
 * What the backend's scope asks of --owner, said before a key is read: a
 * user or org key needs one, a system key has none.
 */
static int owner_for_scope(const struct command *cmd, kw_ctx *ctx,
			   const struct args *a)
{
	kw_scope scope;
	kw_status st;

	st = kw_backend_scope(ctx, a->pos[0], &scope);
	if (st != KW_OK)
		return lib_error(st);
	if (a->owner == NULL && (scope == KW_SCOPE_USER ||
				 scope == KW_SCOPE_ORG))
		return usage_error(cmd->name, "missing --owner (backend "
				   "\"%s\" holds %s keys: name the %s)",
				   a->pos[0], kw_scope_str(scope),
				   kw_scope_str(scope));
	return GO_ON;
}

static void fill_key_ref(kw_key_ref *ref, const struct args *a)
{
	ref->backend = a->pos[0];
	ref->scope = a->scope;
	ref->owner = a->owner;
	ref->provider = a->pos[1];
}

/* "stored org key of acme for anthropic in org_keys (sk-a****xyz9)".  The
 * scope is named only when it was given: the API does not tell the
 * backend's. */
static void print_key_done(const char *verb, const kw_key_ref *ref,
			   const char *masked)
{
	printf("%s ", verb);
	if (ref->scope != KW_SCOPE_NONE)
		printf("%s ", kw_scope_str(ref->scope));
	printf("key");
	if (ref->owner)
		printf(" of %s", ref->owner);
	printf(" for %s in %s", ref->provider, ref->backend);
	if (masked)
		printf(" (%s)", masked);
	putchar('\n');
}

/*
 * Room for a key read from standard input or the terminal: locked, so that
 * it never reaches swap, and wiped before it is unmapped.  A key never
 * passes through stdio, whose buffers nobody wipes.
 */
struct key_buf {
	char *data;
	size_t size;
	size_t len;
};

static int key_buf_alloc(const char *cmd, struct key_buf *kb)
{
	void *p;
	int err;

	kb->data = NULL;
	kb->len = 0;
	kb->size = KEY_INPUT_MAX;
	p = mmap(NULL, kb->size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "keyway: %s: out of memory\n", cmd);
		return EXIT_ERR;
	}
	if (mlock(p, kb->size) != 0) {
		err = errno;
		munmap(p, kb->size);
		fprintf(stderr, "keyway: %s: cannot lock memory for the key: "
			"%s\n", cmd, strerror(err));
		return EXIT_ERR;
	}
	/* Belt and braces: the process is not dumpable either. */
	(void)madvise(p, kb->size, MADV_DONTDUMP);
	kb->data = p;
	return GO_ON;
}

static void key_buf_free(struct key_buf *kb)
{
	if (!kb->data)
		return;
	explicit_bzero(kb->data, kb->size);
	munlock(kb->data, kb->size);
	munmap(kb->data, kb->size);
	kb->data = NULL;
	kb->len = 0;
}

static int read_piped_key(const char *cmd, struct key_buf *kb)
{
	ssize_t n;
	char extra;

	while (kb->len < kb->size) {
		n = read(STDIN_FILENO, kb->data + kb->len, kb->size - kb->len);
		if (n == 0)
			return GO_ON;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		kb->len += (size_t)n;
	}
	/* Full: one byte more and it is too long. */
	do {
		n = read(STDIN_FILENO, &extra, 1);
	} while (n < 0 && errno == EINTR);
	explicit_bzero(&extra, sizeof(extra));
	if (n < 0)
		goto fail;
	if (n > 0) {
		fprintf(stderr, "keyway: %s: key too long\n", cmd);
		return EXIT_ERR;
	}
	return GO_ON;

fail:
	fprintf(stderr, "keyway: %s: cannot read the key from standard input: "
		"%s\n", cmd, strerror(errno));
	return EXIT_ERR;
}

/* Set by the signals that end a prompt; the command ends by it once the
 * terminal has its echo back and the key is wiped. */
static volatile sig_atomic_t caught_signal;

static void catch_signal(int sig)
{
	caught_signal = sig;
}

static const int prompt_signals[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM };
#define NPROMPT_SIGNALS (sizeof(prompt_signals) / sizeof(prompt_signals[0]))

/* End as the signal that interrupted the prompt would have ended us. */
static int resend_signal(int sig)
{
	sigset_t set;

	signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
	return 128 + sig;
}

/*
 * Prompt for a key on the terminal with echo off and read one line.
 *
 * A signal must not leave the terminal mute: the signals that end a
 * program are blocked except while ppoll() waits, so one can only arrive
 * there, and it ends the wait (no SA_RESTART) without killing us.  A stop
 * (^Z) is held until the terminal is restored.  Signals the caller ignores
 * stay ignored.
 */
static int prompt_key(const char *cmd, const char *provider,
		      struct key_buf *kb)
{
	struct sigaction catcher = { .sa_handler = catch_signal };
	struct sigaction saved_act[NPROMPT_SIGNALS];
	struct termios saved_tio, tio;
	sigset_t block, saved_mask, wait_mask;
	struct pollfd pfd;
	bool tio_changed = false, line_ended = false, too_long = false;
	size_t i;
	ssize_t n, written;
	int fd, err = 0, rc = EXIT_ERR;

	fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "keyway: %s: /dev/tty: %s\n", cmd,
			strerror(errno));
		return EXIT_ERR;
	}

	sigemptyset(&block);
	for (i = 0; i < NPROMPT_SIGNALS; i++)
		sigaddset(&block, prompt_signals[i]);
	sigaddset(&block, SIGTSTP);
	sigaddset(&block, SIGTTIN);
	sigaddset(&block, SIGTTOU);
	sigprocmask(SIG_BLOCK, &block, &saved_mask);
	wait_mask = saved_mask;
	sigaddset(&wait_mask, SIGTSTP);
	sigaddset(&wait_mask, SIGTTIN);
	sigaddset(&wait_mask, SIGTTOU);

	caught_signal = 0;
	sigemptyset(&catcher.sa_mask);
	for (i = 0; i < NPROMPT_SIGNALS; i++) {
		sigaction(prompt_signals[i], NULL, &saved_act[i]);
		if (saved_act[i].sa_handler != SIG_IGN)
			sigaction(prompt_signals[i], &catcher, NULL);
	}

	if (tcgetattr(fd, &saved_tio) != 0) {
		err = errno;
		goto out;
	}
	tio = saved_tio;
	tio.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
	/* One line, and its newline shown so the next output starts afresh. */
	tio.c_lflag |= ICANON | ECHONL;
	if (tcsetattr(fd, TCSAFLUSH, &tio) != 0) {
		err = errno;
		goto out;
	}
	tio_changed = true;
	if (dprintf(fd, "Key for %s: ", provider) < 0) {
		err = errno;
		goto out;
	}

	while (!caught_signal) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (ppoll(&pfd, 1, NULL, &wait_mask) < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			goto out;
		}
		n = read(fd, kb->data + kb->len, kb->size - kb->len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			err = errno;
			goto out;
		}
		if (n == 0)
			break; /* ^D */
		kb->len += (size_t)n;
		if (kb->data[kb->len - 1] == '\n') {
			line_ended = true;
			break;
		}
		if (kb->len == kb->size) {
			too_long = true;
			goto out;
		}
	}
	if (!caught_signal)
		rc = GO_ON;
out:
	if (tio_changed) {
		/* TCSANOW: what is typed next belongs to the shell. */
		tcsetattr(fd, TCSANOW, &saved_tio);
		/* Failing leaves the prompt's line open: harmless. */
		if (!line_ended) {
			written = write(fd, "\n", 1);
			(void)written;
		}
	}
	close(fd);
	/* A signal still pending reaches catch_signal, not the default. */
	sigprocmask(SIG_SETMASK, &saved_mask, NULL);
	for (i = 0; i < NPROMPT_SIGNALS; i++)
		sigaction(prompt_signals[i], &saved_act[i], NULL);
	/* Only now, on a line of its own and with the echo back. */
	if (err)
		fprintf(stderr, "keyway: %s: /dev/tty: %s\n", cmd,
			strerror(err));
	else if (too_long)
		fprintf(stderr, "keyway: %s: key too long\n", cmd);
	if (caught_signal)
		rc = EXIT_ERR;
	return rc;
}

/* Read the value for put and rotate: from a prompt on a terminal, else all
 * of standard input less one trailing newline. */
static int read_key(const char *cmd, const char *provider, struct key_buf *kb)
{
	int rc;

	if (isatty(STDIN_FILENO))
		rc = prompt_key(cmd, provider, kb);
	else
		rc = read_piped_key(cmd, kb);
	if (rc != GO_ON)
		return rc;

	if (kb->len > 0 && kb->data[kb->len - 1] == '\n') {
		kb->len--;
		if (kb->len > 0 && kb->data[kb->len - 1] == '\r')
			kb->len--;
	}
	if (kb->len == 0) {
		fprintf(stderr, "keyway: %s: empty key\n", cmd);
		return EXIT_ERR;
	}
	/* Keys are handed out as C strings: one with a NUL would come back
	 * cut short. */
	if (memchr(kb->data, '\0', kb->len)) {
		fprintf(stderr, "keyway: %s: key contains a NUL byte\n", cmd);
		return EXIT_ERR;
	}
	return GO_ON;
}

/* put and rotate. */
static int cmd_put(const struct command *cmd, int argc, char **argv,
		   const char *config)
{
	static const struct option longopts[] = {
		KEY_OPTIONS,
		{ "name", required_argument, NULL, OPT_NAME },
		{ NULL, 0, NULL, 0 }
	};
	bool rotate = strcmp(cmd->name, "rotate") == 0;
	struct args a = { 0 };
	kw_actor actor = KW_ACTOR_INIT;
	kw_key_ref ref = KW_KEY_REF_INIT;
	struct key_buf kb = { 0 };
	char masked[KW_MASK_SIZE] = "";
	char *user = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;
	int rc;

	rc = parse_args(cmd, argc, argv, ":h", longopts, &a);
	if (rc == GO_ON)
		rc = backend_and_provider(cmd, &a, true);
	if (rc != GO_ON)
		return rc;

	rc = key_buf_alloc(cmd->name, &kb);
	if (rc != GO_ON)
		goto out;
	/* Configuration problems show before anyone types a key. */
	rc = open_as_admin(cmd->name, config_path(config, &a), &ctx,
			   &actor, &user);
	if (rc == GO_ON)
		rc = owner_for_scope(cmd, ctx, &a);
	if (rc != GO_ON)
		goto out;
	fill_key_ref(&ref, &a);
	rc = read_key(cmd->name, ref.provider, &kb);
	if (rc != GO_ON)
		goto out;

	st = kw_key_put(ctx, &actor, &ref, kb.data, kb.len, a.name,
			rotate ? KW_PUT_ROTATE : KW_PUT_CREATE);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	kw_mask(kb.data, kb.len, masked, sizeof(masked));
	print_key_done(rotate ? "rotated" : "stored", &ref, masked);
	rc = EXIT_OK;
out:
	explicit_bzero(masked, sizeof(masked));
	key_buf_free(&kb);
	kw_close(ctx);
	free(user);
	if (caught_signal)
		rc = resend_signal(caught_signal);
	return rc;
}

/* enable, disable and rm. */
static int cmd_key_state(const struct command *cmd, int argc, char **argv,
			 const char *config)
{
	static const struct option longopts[] = {
		KEY_OPTIONS,
		{ NULL, 0, NULL, 0 }
	};
	struct args a = { 0 };
	kw_actor actor = KW_ACTOR_INIT;
	kw_key_ref ref = KW_KEY_REF_INIT;
	const char *done;
	char *user = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;
	int rc;

	rc = parse_args(cmd, argc, argv, ":h", longopts, &a);
	if (rc == GO_ON)
		rc = backend_and_provider(cmd, &a, false);
	if (rc != GO_ON)
		return rc;

	rc = open_as_admin(cmd->name, config_path(config, &a), &ctx,
			   &actor, &user);
	if (rc == GO_ON)
		rc = owner_for_scope(cmd, ctx, &a);
	if (rc != GO_ON)
		goto out;
	fill_key_ref(&ref, &a);
	if (strcmp(cmd->name, "rm") == 0) {
		st = kw_key_delete(ctx, &actor, &ref);
		done = "deleted";
	} else if (strcmp(cmd->name, "enable") == 0) {
		st = kw_key_set_active(ctx, &actor, &ref, 1);
		done = "enabled";
	} else {
		st = kw_key_set_active(ctx, &actor, &ref, 0);
		done = "disabled";
	}
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	print_key_done(done, &ref, NULL);
	rc = EXIT_OK;
out:
	kw_close(ctx);
	free(user);
	return rc;
}

/* One key as ls shows it; copied, since kw_key_info lives for one call. */
struct key_row {
	char *backend;
	kw_scope scope;
	char *owner; /* NULL for system keys */
	char *provider;
	char *name;  /* NULL if none */
	bool active;
	char *masked;
	uint64_t usage_count;
	int64_t last_used;
	int64_t created;
	int64_t rotated;
	char *key_id;
};

struct key_rows {
	struct key_row *v;
	size_t n;
	size_t cap;
	bool due;       /* keep only keys rotated before cutoff */
	int64_t cutoff;
	bool nomem;
};

static void key_row_free(struct key_row *r)
{
	free(r->backend);
	free(r->owner);
	free(r->provider);
	free(r->name);
	free(r->masked);
	free(r->key_id);
}

static void key_rows_free(struct key_rows *rows)
{
	size_t i;

	for (i = 0; i < rows->n; i++)
		key_row_free(&rows->v[i]);
	free(rows->v);
	rows->v = NULL;
	rows->n = rows->cap = 0;
}

/* *dst = a copy of src, or NULL for NULL (and for "" when empty_is_null). */
static bool copy_field(char **dst, const char *src, bool empty_is_null)
{
	*dst = NULL;
	if (!src || (empty_is_null && *src == '\0'))
		return true;
	*dst = strdup(src);
	return *dst != NULL;
}

static kw_status collect_key(void *arg, const kw_key_info *info)
{
	struct key_rows *rows = arg;
	struct key_row *r, *grown;
	size_t cap;

	if (rows->due && info->rotated >= rows->cutoff)
		return KW_OK;
	if (rows->n == rows->cap) {
		cap = rows->cap ? 2 * rows->cap : 16;
		grown = reallocarray(rows->v, cap, sizeof(*grown));
		if (!grown)
			goto nomem;
		rows->v = grown;
		rows->cap = cap;
	}
	r = &rows->v[rows->n];
	memset(r, 0, sizeof(*r));
	r->scope = info->scope;
	r->active = info->active != 0;
	r->usage_count = info->usage_count;
	r->last_used = info->last_used;
	r->created = info->created;
	r->rotated = info->rotated;
	if (!copy_field(&r->backend, info->backend, false) ||
	    !copy_field(&r->owner, info->owner, false) ||
	    !copy_field(&r->provider, info->provider, false) ||
	    !copy_field(&r->name, info->name, true) ||
	    !copy_field(&r->masked, info->masked, false) ||
	    !copy_field(&r->key_id, info->key_id, false)) {
		key_row_free(r);
		goto nomem;
	}
	rows->n++;
	return KW_OK;

nomem:
	rows->nomem = true;
	return KW_ERR_NOMEM;
}

enum time_style {
	TIME_DAY,   /* 2025-01-31 */
	TIME_ISO,   /* 2025-01-31T14:05:09Z */
	TIME_TABLE  /* 2025-01-31 14:05:09Z */
};

/* t in UTC; the number itself if the calendar cannot hold it. */
static void format_time(int64_t t, enum time_style style, char *buf,
			size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	size_t n = 0;

	if (gmtime_r(&tt, &tm)) {
		switch (style) {
		case TIME_DAY:
			n = strftime(buf, size, "%Y-%m-%d", &tm);
			break;
		case TIME_ISO:
			n = strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
			break;
		case TIME_TABLE:
			n = strftime(buf, size, "%Y-%m-%d %H:%M:%SZ", &tm);
			break;
		}
	}
	if (n == 0)
		snprintf(buf, size, "%" PRId64, t);
}

enum {
	COL_BACKEND,
	COL_SCOPE,
	COL_OWNER,
	COL_PROVIDER,
	COL_NAME,
	COL_STATE,
	COL_KEY,
	COL_USES,
	COL_LAST_USED,
	COL_ROTATED,
	NCOLS
};

static const char *const ls_header[NCOLS] = {
	"BACKEND", "SCOPE", "OWNER", "PROVIDER", "NAME", "STATE", "KEY",
	"USES", "LAST-USED", "ROTATED"
};

/* The cells of one table row; s[] may point into the buffers. */
struct row_cells {
	const char *s[NCOLS];
	char uses[24];
	char last_used[32];
	char rotated[32];
};

static void day_cell(int64_t t, char *buf, size_t size)
{
	if (t == 0)
		snprintf(buf, size, "never");
	else
		format_time(t, TIME_DAY, buf, size);
}

static void row_cells(const struct key_row *r, struct row_cells *c)
{
	snprintf(c->uses, sizeof(c->uses), "%" PRIu64, r->usage_count);
	day_cell(r->last_used, c->last_used, sizeof(c->last_used));
	day_cell(r->rotated, c->rotated, sizeof(c->rotated));
	c->s[COL_BACKEND] = str(r->backend);
	c->s[COL_SCOPE] = kw_scope_str(r->scope);
	c->s[COL_OWNER] = r->owner ? r->owner : "-";
	c->s[COL_PROVIDER] = str(r->provider);
	c->s[COL_NAME] = r->name ? r->name : "-";
	c->s[COL_STATE] = r->active ? "active" : "disabled";
	c->s[COL_KEY] = str(r->masked);
	c->s[COL_USES] = c->uses;
	c->s[COL_LAST_USED] = c->last_used;
	c->s[COL_ROTATED] = c->rotated;
}

/* Grow each of the ncols column widths to fit s. */
static void widen(size_t *width, const char *const *s, int ncols)
{
	size_t len;
	int i;

	for (i = 0; i < ncols; i++) {
		len = strlen(s[i]);
		if (len > width[i])
			width[i] = len;
	}
}

/* One table line: two spaces between columns, none after the last. */
static void print_cells(const char *const *s, const size_t *width,
			int ncols)
{
	int i;

	for (i = 0; i < ncols - 1; i++)
		printf("%-*s  ", (int)width[i], s[i]);
	printf("%s\n", s[ncols - 1]);
}

static void print_key_table(const struct key_rows *rows)
{
	struct row_cells c;
	size_t width[NCOLS] = { 0 }, i;

	widen(width, ls_header, NCOLS);
	for (i = 0; i < rows->n; i++) {
		row_cells(&rows->v[i], &c);
		widen(width, c.s, NCOLS);
	}
	print_cells(ls_header, width, NCOLS);
	for (i = 0; i < rows->n; i++) {
		row_cells(&rows->v[i], &c);
		print_cells(c.s, width, NCOLS);
	}
}

/* A JSON string, or null for NULL; NULL if jansson refuses it. */
static json_t *json_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

/* ISO 8601 in UTC, or null for never. */
static json_t *json_time(int64_t t)
{
	char buf[48];

	if (t == 0)
		return json_null();
	format_time(t, TIME_ISO, buf, sizeof(buf));
	return json_string(buf);
}

/* json_object_set_new() takes value even when it fails, NULL included. */
static json_t *key_row_json(const struct key_row *r)
{
	json_int_t uses = r->usage_count > (uint64_t)INT64_MAX ?
			  (json_int_t)INT64_MAX : (json_int_t)r->usage_count;
	json_t *o = json_object();

	if (!o)
		return NULL;
	if (json_object_set_new(o, "backend", json_str_or_null(r->backend)) ||
	    json_object_set_new(o, "scope",
				json_string(kw_scope_str(r->scope))) ||
	    json_object_set_new(o, "owner", json_str_or_null(r->owner)) ||
	    json_object_set_new(o, "provider",
				json_str_or_null(r->provider)) ||
	    json_object_set_new(o, "name", json_str_or_null(r->name)) ||
	    json_object_set_new(o, "active", json_boolean(r->active)) ||
	    json_object_set_new(o, "masked", json_str_or_null(r->masked)) ||
	    json_object_set_new(o, "usage_count", json_integer(uses)) ||
	    json_object_set_new(o, "last_used", json_time(r->last_used)) ||
	    json_object_set_new(o, "created", json_time(r->created)) ||
	    json_object_set_new(o, "rotated", json_time(r->rotated)) ||
	    json_object_set_new(o, "key_id", json_str_or_null(r->key_id))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int print_key_json(const struct key_rows *rows)
{
	json_t *list, *o;
	char *text = NULL;
	size_t i;
	int rc = EXIT_ERR;

	list = json_array();
	if (!list)
		goto out;
	for (i = 0; i < rows->n; i++) {
		o = key_row_json(&rows->v[i]);
		if (!o || json_array_append_new(list, o) != 0)
			goto out;
	}
	text = json_dumps(list, JSON_FLAGS);
	if (!text)
		goto out;
	puts(text);
	rc = EXIT_OK;
out:
	if (rc != EXIT_OK)
		fprintf(stderr, "keyway: ls: cannot encode the list as JSON "
			"(out of memory, or a field that is not UTF-8)\n");
	free(text);
	json_decref(list);
	return rc;
}

static int cmd_ls(const struct command *cmd, int argc, char **argv,
		  const char *config)
{
	static const struct option longopts[] = {
		{ "owner", required_argument, NULL, OPT_OWNER },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "due", optional_argument, NULL, OPT_DUE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct args a = { 0 };
	kw_actor actor = KW_ACTOR_INIT;
	struct key_rows rows = { 0 };
	const char *backend = NULL;
	char *user = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;
	int rc;

	rc = parse_args(cmd, argc, argv, ":h", longopts, &a);
	if (rc != GO_ON)
		return rc;
	if (a.npos > 1)
		return usage_error(cmd->name, "unexpected argument \"%s\"",
				   a.pos[1]);
	if (a.npos == 1) {
		if (*a.pos[0] == '\0')
			return usage_error(cmd->name, "empty BACKEND");
		backend = a.pos[0];
	}

	rc = open_as_admin(cmd->name, config_path(config, &a), &ctx,
			   &actor, &user);
	if (rc != GO_ON)
		goto out;
	if (a.due) {
		rows.due = true;
		rows.cutoff = (int64_t)time(NULL) -
			      a.due_days * SECONDS_PER_DAY;
	}
	st = kw_key_list(ctx, &actor, backend, a.owner, collect_key, &rows);
	if (rows.nomem) {
		fprintf(stderr, "keyway: ls: out of memory\n");
		rc = EXIT_ERR;
		goto out;
	}
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	if (a.json) {
		rc = print_key_json(&rows);
	} else {
		print_key_table(&rows);
		rc = EXIT_OK;
	}
out:
	key_rows_free(&rows);
	kw_close(ctx);
	free(user);
	return rc;
}

static int cmd_rekey(const struct command *cmd, int argc, char **argv,
		     const char *config)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct args a = { 0 };
	kw_actor actor = KW_ACTOR_INIT;
	uint64_t count = 0;
	char *user = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;
	int rc;

	rc = parse_args(cmd, argc, argv, ":h", longopts, &a);
	if (rc != GO_ON)
		return rc;
	if (a.npos == 0)
		return usage_error(cmd->name, "missing BACKEND");
	if (a.npos > 1)
		return usage_error(cmd->name, "unexpected argument \"%s\"",
				   a.pos[1]);
	if (*a.pos[0] == '\0')
		return usage_error(cmd->name, "empty BACKEND");

	rc = open_as_admin(cmd->name, config_path(config, &a), &ctx,
			   &actor, &user);
	if (rc != GO_ON)
		goto out;
	st = kw_rekey(ctx, &actor, a.pos[0], &count);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	printf("re-sealed %" PRIu64 " key%s of %s\n", count,
	       count == 1 ? "" : "s", a.pos[0]);
	rc = EXIT_OK;
out:
	kw_close(ctx);
	free(user);
	return rc;
}

/* ---- usage: the usage log of keyway.ledger ---- */

/* The start of the UTC day that holds t. */
static int64_t day_start(int64_t t)
{
	int64_t r = t % SECONDS_PER_DAY;

	return t - (r < 0 ? r + SECONDS_PER_DAY : r);
}

/* Read exactly n digits at *p and move past them. */
static bool take_digits(const char **p, int n, int *value)
{
	int i, v = 0;

	for (i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*value = v;
	return true;
}

/* "YYYY-MM-DD" (midnight) or "YYYY-MM-DDTHH:MM:SSZ", in UTC. */
static bool parse_utc(const char *s, int64_t *t)
{
	struct tm tm = { 0 }, back;
	int year, mon, day, hour = 0, min = 0, sec = 0;
	time_t tt;

	if (!take_digits(&s, 4, &year) || *s++ != '-' ||
	    !take_digits(&s, 2, &mon) || *s++ != '-' ||
	    !take_digits(&s, 2, &day))
		return false;
	if (*s == 'T') {
		s++;
		if (!take_digits(&s, 2, &hour) || *s++ != ':' ||
		    !take_digits(&s, 2, &min) || *s++ != ':' ||
		    !take_digits(&s, 2, &sec) || *s++ != 'Z')
			return false;
	}
	if (*s != '\0')
		return false;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	tt = timegm(&tm);
	/* timegm() makes 02-30 into 03-02: a time that moved did not exist. */
	if (!gmtime_r(&tt, &back) || back.tm_year != year - 1900 ||
	    back.tm_mon != mon - 1 || back.tm_mday != day ||
	    back.tm_hour != hour || back.tm_min != min || back.tm_sec != sec)
		return false;
	*t = (int64_t)tt;
	return true;
}

/* "30m", "24h", "7d": that long before now, but not before 1970. */
static bool parse_ago(const char *s, int64_t now, int64_t *t)
{
	unsigned long long v;
	int64_t unit;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end[0] == '\0' || end[1] != '\0')
		return false;
	switch (end[0]) {
	case 'm':
		unit = 60;
		break;
	case 'h':
		unit = 3600;
		break;
	case 'd':
		unit = SECONDS_PER_DAY;
		break;
	default:
		return false;
	}
	if (v > (unsigned long long)(now / unit))
		*t = 0;
	else
		*t = now - (int64_t)v * unit;
	return true;
}

static int take_when(const char *cmd, const char *opt, const char *value,
		     int64_t now, int64_t *t)
{
	if (parse_ago(value, now, t))
		return GO_ON;
	if (!parse_utc(value, t))
		return usage_error(cmd, "%s: \"%s\" is not a date (YYYY-MM-DD), "
				   "a UTC time (YYYY-MM-DDTHH:MM:SSZ) or a "
				   "duration (30m, 24h, 7d)", opt, value);
	/* The log has nothing older, and 0 means "no bound" to kw_usage. */
	if (*t < 0)
		return usage_error(cmd, "%s: \"%s\" is before 1970", opt, value);
	return GO_ON;
}

/* The period of the filter: --since (default today), --until (none). */
static int usage_period(const char *cmd, const struct args *a, int64_t now,
			kw_usage_filter *f)
{
	int rc;

	f->since = day_start(now);
	f->until = 0;
	if (a->since) {
		rc = take_when(cmd, "--since", a->since, now, &f->since);
		if (rc != GO_ON)
			return rc;
	}
	if (a->until) {
		rc = take_when(cmd, "--until", a->until, now, &f->until);
		if (rc != GO_ON)
			return rc;
	}
	/* Both are ignored there, so their order does not matter. */
	if (a->alerts || !a->until || f->until > f->since)
		return GO_ON;
	if (a->since)
		return usage_error(cmd, "--until \"%s\" is not after --since "
				   "\"%s\"", a->until, a->since);
	return usage_error(cmd, "--until \"%s\" is not after the start of "
			   "today (UTC), the default --since", a->until);
}

/*
 * What a walk of the log gathers.  The summary and the alerts keep their
 * tallies both in a tree, to find one again for each row, and in a list,
 * to sort them afterwards; the rows themselves are not kept, since a busy
 * host logs millions a day.
 */
struct usage_read {
	int64_t start;   /* --alerts: the first of the ALERT_DAYS days */
	void *tree;
	void **v;
	size_t n;
	size_t cap;
	size_t nrows;    /* --json: rows written */
	enum {
		USAGE_OK,
		USAGE_NOMEM,
		USAGE_JSON,   /* a row jansson would not encode */
		USAGE_WRITE
	} failed;
	int err;         /* errno of a failed write */
};

/* Every tally is in the tree, so tdestroy() frees them all. */
static void usage_read_free(struct usage_read *u)
{
	tdestroy(u->tree, free);
	u->tree = NULL;
	free(u->v);
	u->v = NULL;
	u->n = u->cap = 0;
}

/* Add item to the tree and the list; on failure the caller still owns
 * it. */
static bool tally_add(struct usage_read *u, void *item,
		      int (*cmp)(const void *, const void *))
{
	void **grown;
	size_t cap;

	if (u->n == u->cap) {
		cap = u->cap ? 2 * u->cap : 64;
		grown = reallocarray(u->v, cap, sizeof(*grown));
		if (!grown)
			return false;
		u->v = grown;
		u->cap = cap;
	}
	if (!tsearch(item, &u->tree, cmp))
		return false;
	u->v[u->n++] = item;
	return true;
}

/* strcmp() that puts NULL, "none", after every name. */
static int cmp_name(const char *a, const char *b)
{
	if (!a || !b)
		return (a == NULL) - (b == NULL);
	return strcmp(a, b);
}

/* Copy s to *p and move *p past it; NULL stays NULL. */
static const char *keep_text(char **p, const char *s)
{
	char *copy = *p;
	size_t len;

	if (!s)
		return NULL;
	len = strlen(s) + 1;
	memcpy(copy, s, len);
	*p += len;
	return copy;
}

static size_t text_size(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

/* One line of the summary. */
struct usage_group {
	const char *user;     /* NULL if none */
	const char *org;      /* NULL if none */
	const char *backend;
	const char *provider;
	uint64_t admitted;
	uint64_t denied;
	uint64_t refunded;
	int64_t last;
	char text[];          /* the names above point here */
};

/* The order of the summary: user, backend, provider, and org to break
 * the tie. */
static int cmp_group(const void *pa, const void *pb)
{
	const struct usage_group *a = pa, *b = pb;
	int c;

	c = cmp_name(a->user, b->user);
	if (c == 0)
		c = cmp_name(a->backend, b->backend);
	if (c == 0)
		c = cmp_name(a->provider, b->provider);
	if (c == 0)
		c = cmp_name(a->org, b->org);
	return c;
}

static int cmp_group_ptr(const void *pa, const void *pb)
{
	return cmp_group(*(void *const *)pa, *(void *const *)pb);
}

static struct usage_group *new_group(const struct usage_group *key)
{
	struct usage_group *g;
	char *p;

	g = calloc(1, sizeof(*g) + text_size(key->user) +
		      text_size(key->org) + text_size(key->backend) +
		      text_size(key->provider));
	if (!g)
		return NULL;
	p = g->text;
	g->user = keep_text(&p, key->user);
	g->org = keep_text(&p, key->org);
	g->backend = keep_text(&p, key->backend);
	g->provider = keep_text(&p, key->provider);
	return g;
}

static kw_status tally_group(void *arg, const kw_usage_row *row)
{
	struct usage_read *u = arg;
	struct usage_group key = {
		.user = row->user,
		.org = row->org,
		.backend = str(row->backend),
		.provider = str(row->provider)
	};
	struct usage_group *g;
	void *found;
	const char *outcome = str(row->outcome);

	found = tfind(&key, &u->tree, cmp_group);
	if (found) {
		g = *(struct usage_group **)found;
	} else {
		g = new_group(&key);
		if (!g || !tally_add(u, g, cmp_group)) {
			free(g);
			u->failed = USAGE_NOMEM;
			return KW_ERR_NOMEM;
		}
		g->last = row->time;
	}
	if (strcmp(outcome, "admitted") == 0)
		g->admitted++;
	else if (strcmp(outcome, "denied") == 0)
		g->denied++;
	else if (strcmp(outcome, "refunded") == 0)
		g->refunded++;
	if (row->time > g->last)
		g->last = row->time;
	return KW_OK;
}

enum {
	UCOL_USER,
	UCOL_ORG,
	UCOL_BACKEND,
	UCOL_PROVIDER,
	UCOL_ADMITTED,
	UCOL_DENIED,
	UCOL_REFUNDED,
	UCOL_LAST,
	NUCOLS
};

static const char *const usage_header[NUCOLS] = {
	"USER", "ORG", "BACKEND", "PROVIDER", "ADMITTED", "DENIED",
	"REFUNDED", "LAST"
};

struct usage_cells {
	const char *s[NUCOLS];
	char admitted[24];
	char denied[24];
	char refunded[24];
	char last[32];
};

static void usage_cells(const struct usage_group *g, struct usage_cells *c)
{
	snprintf(c->admitted, sizeof(c->admitted), "%" PRIu64, g->admitted);
	snprintf(c->denied, sizeof(c->denied), "%" PRIu64, g->denied);
	snprintf(c->refunded, sizeof(c->refunded), "%" PRIu64, g->refunded);
	format_time(g->last, TIME_TABLE, c->last, sizeof(c->last));
	c->s[UCOL_USER] = g->user ? g->user : "-";
	c->s[UCOL_ORG] = g->org ? g->org : "-";
	c->s[UCOL_BACKEND] = g->backend;
	c->s[UCOL_PROVIDER] = g->provider;
	c->s[UCOL_ADMITTED] = c->admitted;
	c->s[UCOL_DENIED] = c->denied;
	c->s[UCOL_REFUNDED] = c->refunded;
	c->s[UCOL_LAST] = c->last;
}

static void print_usage_table(struct usage_read *u)
{
	struct usage_cells c;
	size_t width[NUCOLS] = { 0 }, i;

	if (u->n > 1)
		qsort(u->v, u->n, sizeof(*u->v), cmp_group_ptr);
	widen(width, usage_header, NUCOLS);
	for (i = 0; i < u->n; i++) {
		usage_cells(u->v[i], &c);
		widen(width, c.s, NUCOLS);
	}
	print_cells(usage_header, width, NUCOLS);
	for (i = 0; i < u->n; i++) {
		usage_cells(u->v[i], &c);
		print_cells(c.s, width, NUCOLS);
	}
}

/* json_object_set_new() takes value even when it fails, NULL included. */
static json_t *usage_row_json(const kw_usage_row *row)
{
	char when[48];
	json_t *o = json_object();

	if (!o)
		return NULL;
	format_time(row->time, TIME_ISO, when, sizeof(when));
	if (json_object_set_new(o, "time", json_string(when)) ||
	    json_object_set_new(o, "chain", json_str_or_null(row->chain)) ||
	    json_object_set_new(o, "backend",
				json_str_or_null(row->backend)) ||
	    json_object_set_new(o, "provider",
				json_str_or_null(row->provider)) ||
	    json_object_set_new(o, "user", json_str_or_null(row->user)) ||
	    json_object_set_new(o, "org", json_str_or_null(row->org)) ||
	    json_object_set_new(o, "outcome",
				json_str_or_null(row->outcome))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Write text with each line after the first indented by two spaces: an
 * object dumped on its own then reads as an element of its array. */
static int put_indented(const char *text)
{
	for (; *text; text++) {
		if (putchar(*text) == EOF)
			return -1;
		if (*text == '\n' && fputs("  ", stdout) == EOF)
			return -1;
	}
	return 0;
}

/*
 * --json writes each row as it comes, as json_dumps() would lay out the
 * whole array, rather than hold the period's rows in memory; the array is
 * closed by end_json_rows().
 */
static kw_status write_json_row(void *arg, const kw_usage_row *row)
{
	struct usage_read *u = arg;
	char *text = NULL;
	json_t *o;

	o = usage_row_json(row);
	if (o)
		text = json_dumps(o, JSON_FLAGS);
	json_decref(o);
	if (!text) {
		u->failed = USAGE_JSON;
		return KW_ERR_INVAL;
	}
	if (fputs(u->nrows == 0 ? "[\n  " : ",\n  ", stdout) == EOF ||
	    put_indented(text) != 0) {
		u->err = errno;
		u->failed = USAGE_WRITE;
		free(text);
		return KW_ERR_IO;
	}
	u->nrows++;
	free(text);
	return KW_OK;
}

static void end_json_rows(const struct usage_read *u)
{
	fputs(u->nrows == 0 ? "[]\n" : "\n]\n", stdout);
}

/* One user's admitted requests per UTC day; the last day is today. */
struct usage_user {
	const char *user;    /* NULL if none */
	uint64_t day[ALERT_DAYS];
	char text[];
};

static int cmp_user(const void *pa, const void *pb)
{
	const struct usage_user *a = pa, *b = pb;

	return cmp_name(a->user, b->user);
}

static kw_status tally_user(void *arg, const kw_usage_row *row)
{
	struct usage_read *u = arg;
	struct usage_user key = { .user = row->user };
	struct usage_user *uu;
	void *found;
	char *p;
	int64_t day;

	if (strcmp(str(row->outcome), "admitted") != 0 ||
	    row->time < u->start)
		return KW_OK;
	day = (row->time - u->start) / SECONDS_PER_DAY;
	if (day >= ALERT_DAYS)
		return KW_OK;

	found = tfind(&key, &u->tree, cmp_user);
	if (found) {
		uu = *(struct usage_user **)found;
	} else {
		uu = calloc(1, sizeof(*uu) + text_size(row->user));
		if (uu) {
			/* Named before it goes in the tree, which sorts by
			 * name. */
			p = uu->text;
			uu->user = keep_text(&p, row->user);
		}
		if (!uu || !tally_add(u, uu, cmp_user)) {
			free(uu);
			u->failed = USAGE_NOMEM;
			return KW_ERR_NOMEM;
		}
	}
	uu->day[day]++;
	return KW_OK;
}

static uint64_t user_today(const struct usage_user *uu)
{
	return uu->day[ALERT_DAYS - 1];
}

static uint64_t user_past(const struct usage_user *uu)
{
	uint64_t sum = 0;
	int i;

	for (i = 0; i < ALERT_PAST_DAYS; i++)
		sum += uu->day[i];
	return sum;
}

/* More than twice the daily mean of the past days, in integers:
 * today > 2 * past / 7. */
static bool user_alerts(const struct usage_user *uu)
{
	return user_today(uu) * ALERT_PAST_DAYS > 2 * user_past(uu);
}

/* Busiest first; then by name, so that the order never depends on the
 * log's. */
static int cmp_alert_ptr(const void *pa, const void *pb)
{
	const struct usage_user *a = *(void *const *)pa;
	const struct usage_user *b = *(void *const *)pb;
	uint64_t ta = user_today(a), tb = user_today(b);

	if (ta != tb)
		return ta > tb ? -1 : 1;
	return cmp_name(a->user, b->user);
}

/* Keep the users that alert, busiest first. */
static void select_alerts(struct usage_read *u)
{
	size_t i, n = 0;

	for (i = 0; i < u->n; i++) {
		if (user_alerts(u->v[i]))
			u->v[n++] = u->v[i];
	}
	/* The others stay in the tree, which frees them. */
	u->n = n;
	if (u->n > 1)
		qsort(u->v, u->n, sizeof(*u->v), cmp_alert_ptr);
}

enum {
	ACOL_USER,
	ACOL_TODAY,
	ACOL_MEAN,
	ACOL_RATIO,
	NACOLS
};

static const char *const alert_header[NACOLS] = {
	"USER", "TODAY", "MEAN-7D", "RATIO"
};

struct alert_cells {
	const char *s[NACOLS];
	char today[24];
	char mean[32];
	char ratio[32];
};

static void alert_cells(const struct usage_user *uu, struct alert_cells *c)
{
	uint64_t today = user_today(uu), past = user_past(uu);

	snprintf(c->today, sizeof(c->today), "%" PRIu64, today);
	snprintf(c->mean, sizeof(c->mean), "%.1f",
		 (double)past / ALERT_PAST_DAYS);
	if (past == 0)
		snprintf(c->ratio, sizeof(c->ratio), "new");
	else
		snprintf(c->ratio, sizeof(c->ratio), "%.1fx",
			 (double)today * ALERT_PAST_DAYS / (double)past);
	c->s[ACOL_USER] = uu->user ? uu->user : "-";
	c->s[ACOL_TODAY] = c->today;
	c->s[ACOL_MEAN] = c->mean;
	c->s[ACOL_RATIO] = c->ratio;
}

static void print_alert_table(const struct usage_read *u)
{
	struct alert_cells c;
	size_t width[NACOLS] = { 0 }, i;

	widen(width, alert_header, NACOLS);
	for (i = 0; i < u->n; i++) {
		alert_cells(u->v[i], &c);
		widen(width, c.s, NACOLS);
	}
	print_cells(alert_header, width, NACOLS);
	for (i = 0; i < u->n; i++) {
		alert_cells(u->v[i], &c);
		print_cells(c.s, width, NACOLS);
	}
}

static json_t *alert_json(const struct usage_user *uu)
{
	uint64_t today = user_today(uu), past = user_past(uu);
	json_t *o = json_object();

	if (!o)
		return NULL;
	if (json_object_set_new(o, "user", json_str_or_null(uu->user)) ||
	    json_object_set_new(o, "today",
				json_integer(today > (uint64_t)INT64_MAX ?
					     (json_int_t)INT64_MAX :
					     (json_int_t)today)) ||
	    json_object_set_new(o, "mean_7d",
				json_real((double)past /
					  ALERT_PAST_DAYS)) ||
	    json_object_set_new(o, "ratio",
				past == 0 ? json_null() :
				json_real((double)today * ALERT_PAST_DAYS /
					  (double)past))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int print_alert_json(const struct usage_read *u)
{
	json_t *list, *o;
	char *text = NULL;
	size_t i;
	int rc = EXIT_ERR;

	list = json_array();
	if (!list)
		goto out;
	for (i = 0; i < u->n; i++) {
		o = alert_json(u->v[i]);
		if (!o || json_array_append_new(list, o) != 0)
			goto out;
	}
	text = json_dumps(list, JSON_FLAGS);
	if (!text)
		goto out;
	puts(text);
	rc = EXIT_OK;
out:
	if (rc != EXIT_OK)
		fprintf(stderr, "keyway: usage: cannot encode the alerts as "
			"JSON (out of memory, or a user name that is not "
			"UTF-8)\n");
	free(text);
	json_decref(list);
	return rc;
}

/* Say why the walk stopped, if it was our doing; GO_ON if it was not. */
static int usage_read_error(const struct usage_read *u)
{
	switch (u->failed) {
	case USAGE_OK:
		return GO_ON;
	case USAGE_NOMEM:
		fprintf(stderr, "keyway: usage: out of memory\n");
		break;
	case USAGE_JSON:
		fprintf(stderr, "keyway: usage: cannot encode a row as JSON "
			"(out of memory, or a field that is not UTF-8)\n");
		break;
	case USAGE_WRITE:
		fprintf(stderr, "keyway: write error: %s\n",
			strerror(u->err));
		/* Reported: finish() need not say it again. */
		clearerr(stdout);
		break;
	}
	return EXIT_ERR;
}

static int cmd_usage(const struct command *cmd, int argc, char **argv,
		     const char *config)
{
	static const struct option longopts[] = {
		{ "since", required_argument, NULL, OPT_SINCE },
		{ "until", required_argument, NULL, OPT_UNTIL },
		{ "user", required_argument, NULL, OPT_USER },
		{ "org", required_argument, NULL, OPT_ORG },
		{ "backend", required_argument, NULL, OPT_BACKEND },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "alerts", no_argument, NULL, OPT_ALERTS },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct args a = { 0 };
	kw_actor actor = KW_ACTOR_INIT;
	kw_usage_filter filter = KW_USAGE_FILTER_INIT;
	struct usage_read u = { 0 };
	int64_t now = (int64_t)time(NULL);
	kw_usage_fn *fn;
	char *user = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;
	int rc;

	rc = parse_args(cmd, argc, argv, ":h", longopts, &a);
	if (rc == GO_ON)
		rc = no_arguments(cmd, &a);
	if (rc == GO_ON)
		rc = usage_period(cmd->name, &a, now, &filter);
	if (rc != GO_ON)
		return rc;
	filter.user = a.user;
	filter.org = a.org;
	filter.backend = a.backend;
	if (a.alerts) {
		u.start = day_start(now) - ALERT_PAST_DAYS * SECONDS_PER_DAY;
		filter.since = u.start;
		filter.until = u.start + ALERT_DAYS * SECONDS_PER_DAY;
		fn = tally_user;
	} else if (a.json) {
		fn = write_json_row;
	} else {
		fn = tally_group;
	}

	rc = open_as_admin(cmd->name, config_path(config, &a), &ctx,
			   &actor, &user);
	if (rc != GO_ON)
		goto out;
	/* A typo would print an empty table, as if nothing had been used. */
	if (a.backend != NULL) {
		kw_scope scope;

		st = kw_backend_scope(ctx, a.backend, &scope);
		if (st != KW_OK) {
			rc = lib_error(st);
			goto out;
		}
	}
	st = kw_usage(ctx, &actor, &filter, fn, &u);
	rc = usage_read_error(&u);
	if (rc != GO_ON)
		goto out;
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	rc = EXIT_OK;
	if (a.alerts) {
		select_alerts(&u);
		if (a.json)
			rc = print_alert_json(&u);
		else
			print_alert_table(&u);
	} else if (a.json) {
		end_json_rows(&u);
	} else {
		print_usage_table(&u);
	}
out:
	usage_read_free(&u);
	kw_close(ctx);
	free(user);
	return rc;
}

static void report_line(void *arg, const char *line)
{
	size_t *count = arg;

	fprintf(stderr, "%s\n", line);
	(*count)++;
}

/* check --json: the problems, gathered as kw_check_problems() finds them. */
struct check_json {
	json_t *problems;
	bool failed; /* a problem could not be encoded */
};

static void add_problem(struct check_json *c, const char *file, int line,
			const char *message)
{
	json_t *o;

	if (c->failed)
		return;
	o = json_pack("{s:o, s:o, s:s}", "file", json_text(file),
		      "line", line > 0 ? json_integer(line) : json_null(),
		      "message", message);
	if (!o || json_array_append_new(c->problems, o) != 0)
		c->failed = true;
}

static void problem_json(void *arg, const kw_problem *p)
{
	add_problem(arg, p->file, p->line, p->message);
}

/* {"ok": ..., "problems": [{"file", "line", "message"}...]} on stdout. */
static int check_json(const char *config)
{
	struct check_json c = { json_array(), false };
	const char *msg;
	json_t *o = NULL;
	char *text = NULL;
	kw_status st;
	int rc = EXIT_ERR;

	if (!c.problems)
		goto out;
	st = kw_check_problems(config, problem_json, &c);
	/* A failure that reported nothing still deserves its entry. */
	if (st != KW_OK && json_array_size(c.problems) == 0 && !c.failed) {
		msg = kw_last_error();
		add_problem(&c, NULL, 0, msg && *msg ? msg : kw_status_str(st));
	}
	if (c.failed)
		goto out;
	o = json_pack("{s:b, s:O}", "ok", st == KW_OK, "problems", c.problems);
	if (!o)
		goto out;
	text = json_dumps(o, JSON_FLAGS);
	if (!text)
		goto out;
	puts(text);
	rc = st == KW_OK ? EXIT_OK : EXIT_ERR;
out:
	if (!text)
		fprintf(stderr, "keyway: check: cannot encode the problems as "
			"JSON (out of memory, or a field that is not "
			"UTF-8)\n");
	free(text);
	json_decref(o);
	json_decref(c.problems);
	return rc;
}

static int cmd_check(const struct command *cmd, int argc, char **argv,
		     const char *config)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct args a = { 0 };
	size_t count = 0;
	kw_status st;
	int rc;

	rc = parse_args(cmd, argc, argv, ":h", longopts, &a);
	if (rc == GO_ON)
		rc = no_arguments(cmd, &a);
	if (rc != GO_ON)
		return rc;

	if (a.json)
		return check_json(config_path(config, &a));
	st = kw_check(config_path(config, &a), report_line, &count);
	if (st == KW_OK) {
		puts("ok");
		return EXIT_OK;
	}
	/* A failure that reported nothing still deserves its line. */
	if (count == 0)
		lib_error(st);
	return EXIT_ERR;
}

static void created_line(void *arg, const char *line)
{
	(void)arg;
	puts(line);
}

/*
 * Make the files the configuration names that are missing, so that check
 * passes before the first request: what was made on standard output,
 * problems on standard error as check prints them.
 */
static int cmd_init(const struct command *cmd, int argc, char **argv,
		    const char *config)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct args a = { 0 };
	size_t count = 0;
	kw_status st;
	int rc;

	rc = parse_args(cmd, argc, argv, ":h", longopts, &a);
	if (rc == GO_ON)
		rc = no_arguments(cmd, &a);
	if (rc != GO_ON)
		return rc;

	st = kw_init(config_path(config, &a), created_line, report_line,
		     &count);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "keyway: init: cannot write: %s\n",
			strerror(errno));
		return EXIT_ERR;
	}
	if (st == KW_OK)
		return EXIT_OK;
	if (count == 0)
		lib_error(st);
	return EXIT_ERR;
}

static int fill_random(unsigned char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = getrandom(buf, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_key_file(const char *path, const char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;
	int fd, err;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		fprintf(stderr, "keyway: keygen: %s: %s\n", path,
			strerror(errno));
		return EXIT_ERR;
	}
	while (off < len) {
		n = write(fd, buf + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)n;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	return EXIT_OK;

fail:
	err = errno;
	if (fd >= 0)
		close(fd);
	/* We created it (O_EXCL): a truncated key must not be left behind. */
	unlink(path);
	fprintf(stderr, "keyway: keygen: %s: %s\n", path, strerror(err));
	return EXIT_ERR;
}

static int cmd_keygen(const struct command *cmd, int argc, char **argv,
		      const char *config)
{
	static const struct option longopts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static const char digits[] = "0123456789abcdef";
	unsigned char key[MASTER_KEY_BYTES];
	char hex[2 * MASTER_KEY_BYTES + 1];
	struct args a = { 0 };
	size_t i;
	int rc;

	(void)config;
	rc = parse_args(cmd, argc, argv, ":o:h", longopts, &a);
	if (rc == GO_ON)
		rc = no_arguments(cmd, &a);
	if (rc != GO_ON)
		return rc;

	if (fill_random(key, sizeof(key)) != 0) {
		fprintf(stderr, "keyway: keygen: getrandom: %s\n",
			strerror(errno));
		rc = EXIT_ERR;
		goto out;
	}
	for (i = 0; i < sizeof(key); i++) {
		hex[2 * i] = digits[key[i] >> 4];
		hex[2 * i + 1] = digits[key[i] & 0x0f];
	}
	if (a.output) {
		hex[2 * sizeof(key)] = '\n';
		rc = write_key_file(a.output, hex, sizeof(hex));
	} else {
		rc = write_secret(hex, 2 * sizeof(key));
	}
out:
	explicit_bzero(key, sizeof(key));
	explicit_bzero(hex, sizeof(hex));
	return rc;
}

static int cmd_help(const struct command *cmd, int argc, char **argv,
		    const char *config)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const struct command *topic;
	struct args a = { 0 };
	int rc;

	(void)config;
	rc = parse_args(cmd, argc, argv, ":h", longopts, &a);
	if (rc != GO_ON)
		return rc;
	if (a.npos == 0) {
		print_overview();
		return EXIT_OK;
	}
	if (a.npos > 1)
		return usage_error(cmd->name, "unexpected argument \"%s\"",
				   a.pos[1]);
	topic = find_command(a.pos[0]);
	if (!topic)
		return usage_error(NULL, "help: unknown command \"%s\"",
				   a.pos[0]);
	print_usage(topic);
	return EXIT_OK;
}

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

static const struct command commands[] = {
	{
		"get", cmd_get,
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
		"explain", cmd_explain,
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
		"exec", cmd_exec,
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
		"put", cmd_put,
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
		"rotate", cmd_put,
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
		"enable", cmd_key_state,
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
		"disable", cmd_key_state,
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
		"rm", cmd_key_state,
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
		"ls", cmd_ls,
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
		"usage", cmd_usage,
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
		"check", cmd_check,
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
		HELP_HELP_OPTION
	},
	{
		"init", cmd_init,
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
		"      --json        print {\"ok\", \"problems\"} as JSON on "
		"standard output\n"
		HELP_HELP_OPTION
	},
	{
		"keygen", cmd_keygen,
		"keygen [-o FILE]",
		"make a new random master key",
		"Make a new random 256-bit master key and print it as 64 "
		"hexadecimal\n"
		"characters, as master_key { source = \"env\"; } and "
		"{ source = \"file\"; }\n"
		"read it.\n"
		"\n"
		"Options:\n"
		"  -o, --output=FILE write the key to FILE instead, created "
		"with mode 0600;\n"
		"                    FILE must not exist\n"
		HELP_HELP_OPTION
	},
	{
		"rekey", cmd_rekey,
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
		"help", cmd_help,
		"help [COMMAND]",
		"show this overview or the usage of a command",
		"Show the list of commands, or the usage of COMMAND.\n"
	},
};

static const struct command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	}
	return NULL;
}

static void print_overview(void)
{
	size_t i;

	printf("Usage: keyway [-c CONFIG] COMMAND [ARGS]\n"
	       "Resolve API keys through the chains declared in "
	       "keyway.conf(5), and manage\n"
	       "the keys its backends store.\n"
	       "\n"
	       "Commands:\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		printf("  %-9s %s\n", commands[i].name, commands[i].summary);
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
	static const char shortopts[] = "+:c:hV";
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct sigaction ignore = { .sa_handler = SIG_IGN };
	const struct command *cmd;
	const char *config = NULL;
	int c;

	if (harden() != 0)
		return EXIT_ERR;
	/* A closed pipe is a write error to report, not a silent death. */
	sigemptyset(&ignore.sa_mask);
	sigaction(SIGPIPE, &ignore, &saved_sigpipe);

	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (*optarg == '\0')
				return usage_error(NULL, "empty value for -c");
			config = optarg;
			break;
		case 'h':
			print_overview();
			return finish(EXIT_OK);
		case 'V':
			printf("keyway %s\n", kw_version());
			return finish(EXIT_OK);
		default:
			return option_error(NULL, c, argv, shortopts);
		}
	}
	if (optind >= argc)
		return usage_error(NULL, "missing COMMAND");
	cmd = find_command(argv[optind]);
	if (!cmd)
		return usage_error(NULL, "unknown command \"%s\"",
				   argv[optind]);
	return finish(cmd->run(cmd, argc - optind, argv + optind, config));
}
