/*
 * keyway.c - the keyway(1) command: resolve, explain and export API keys
 * through the chains of keyway.conf(5), check a configuration, make a
 * master key.  Uses only the public interface <keyway/keyway.h>.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

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
	char **pos;             /* positional arguments */
	int npos;
};

/* Long options without a short form get values outside the char range. */
enum {
	OPT_USER = 256,
	OPT_ORG,
	OPT_CHAIN,
	OPT_REVEAL
};

#define REQUEST_OPTIONS \
	{ "user", required_argument, NULL, OPT_USER }, \
	{ "org", required_argument, NULL, OPT_ORG }, \
	{ "chain", required_argument, NULL, OPT_CHAIN }, \
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

/*
 * Parse the options of cmd.  Returns GO_ON, or the exit status when the
 * command is over (help printed, usage error).  getopt_long() only returns
 * what shortopts and longopts offer, so one switch serves every command.
 */
static int parse_args(const struct command *cmd, int argc, char **argv,
		      const char *shortopts, const struct option *longopts,
		      struct args *a)
{
	int c, rc;

	optind = 0; /* glibc: start afresh, re-reading shortopts' flags */
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		rc = GO_ON;
		switch (c) {
		case 'h':
			print_usage(cmd);
			return EXIT_OK;
		case OPT_USER:
			rc = take_value(cmd->name, "--user", &a->user);
			break;
		case OPT_ORG:
			rc = take_value(cmd->name, "--org", &a->org);
			break;
		case OPT_CHAIN:
			rc = take_value(cmd->name, "--chain", &a->chain);
			break;
		case OPT_REVEAL:
			a->reveal = true;
			break;
		case 'o':
			rc = take_value(cmd->name, "-o", &a->output);
			break;
		case 'p':
			/* Only a caller with somewhere to keep it offers -p. */
			if (!a->providers)
				return option_error(cmd->name, c, argv,
						    shortopts);
			a->providers[a->nproviders++] = optarg;
			break;
		default:
			return option_error(cmd->name, c, argv, shortopts);
		}
		if (rc != GO_ON)
			return rc;
	}
	a->pos = argv + optind;
	a->npos = argc - optind;
	return GO_ON;
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

	st = kw_open(&ctx, config);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	req.chain = a.chain;
	req.provider = a.pos[0];
	req.user = a.user;
	req.org = a.org;
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

static int cmd_explain(const struct command *cmd, int argc, char **argv,
		       const char *config)
{
	static const struct option longopts[] = {
		REQUEST_OPTIONS,
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

	st = kw_open(&ctx, config);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	req.chain = a.chain;
	req.provider = a.pos[0];
	req.user = a.user;
	req.org = a.org;
	st = kw_explain(ctx, &req, &t);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	print_trace(t, &req);
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
	st = kw_open(&ctx, config);
	if (st != KW_OK) {
		rc = lib_error(st);
		goto out;
	}
	req.chain = a.chain;
	req.user = a.user;
	req.org = a.org;
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
	for (i = 0, j = 0; i < nenv; i++) {
		if (!replaced(environ[i], ex, a.nproviders))
			envp[j++] = environ[i];
	}
	for (i = 0; i < a.nproviders; i++) {
		if (make_entry(&ex[i]) != 0)
			goto out_nomem;
		envp[j++] = ex[i].entry;
	}
	envp[j] = NULL;

	sigaction(SIGPIPE, &saved_sigpipe, NULL);
	execvpe(a.pos[0], a.pos, envp);
	err = errno;
	fprintf(stderr, "keyway: exec: %s: %s\n", a.pos[0], strerror(err));
	rc = err == ENOENT ? EXIT_NO_COMMAND : EXIT_CANNOT_RUN;
	goto out_refund;

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

static void report_line(void *arg, const char *line)
{
	size_t *count = arg;

	fprintf(stderr, "%s\n", line);
	(*count)++;
}

static int cmd_check(const struct command *cmd, int argc, char **argv,
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

	st = kw_check(config, report_line, &count);
	if (st == KW_OK) {
		puts("ok");
		return EXIT_OK;
	}
	/* A failure that reported nothing still deserves its line. */
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
		"explain PROVIDER [--user U] [--org O] [--chain C]",
		"show step by step how a request resolves",
		"Show how a request for PROVIDER resolves: every chain entry "
		"asked, what it\n"
		"answered and what the chain did next.  The key itself is "
		"never shown.\n"
		"Exits with the status the resolution would have had.\n"
		"\n"
		"Options:\n"
		HELP_REQUEST_OPTIONS
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
		"check", cmd_check,
		"check",
		"check the configuration, backends and file permissions",
		"Load the configuration and every module, open and "
		"health-check every\n"
		"backend, and look at the permissions of every file involved.  "
		"Each problem\n"
		"is printed on standard error as \"file:line: what is wrong\"; "
		"\"ok\" is\n"
		"printed when there is none.\n"
		"\n"
		"Options:\n"
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
	       "keyway.conf(5).\n"
	       "\n"
	       "Commands:\n");
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		printf("  %-9s %s\n", commands[i].name, commands[i].summary);
	printf("\n"
	       "Options:\n"
	       "  -c, --config=FILE read FILE instead of %s\n"
	       "  -h, --help        show this help and exit\n"
	       "  -V, --version     show the version and exit\n"
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
