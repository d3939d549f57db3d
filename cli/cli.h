/*
 * cli.h - what the files of keyway(1) share: exit statuses, the command
 * table's entry, the option tables that cli/options.c parses, and the
 * output helpers of cli/output.c.  Not installed.
 */
#ifndef KEYWAY_CLI_H
#define KEYWAY_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Returned by the argument checks when the command should go on. */
#define GO_ON (-1)

#define SECONDS_PER_DAY 86400

/* Every --json output is indented alike. */
#define JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER)

/* One entry of main.c's commands[]. */
struct command {
	const char *name;
	/* argv[0] is the command's name; config is -c FILE given before it,
	 * or NULL.  Returns the exit status. */
	int (*run)(const struct command *cmd, int argc, char **argv,
		   const char *config);
};

/* The commands, one group per file. */
int cmd_get(const struct command *cmd, int argc, char **argv,
	    const char *config);                        /* cmd_resolve.c */
int cmd_explain(const struct command *cmd, int argc, char **argv,
		const char *config);                    /* cmd_resolve.c */
int cmd_exec(const struct command *cmd, int argc, char **argv,
	     const char *config);                       /* cmd_exec.c */
int cmd_put(const struct command *cmd, int argc, char **argv,
	    const char *config);                        /* cmd_keys.c */
int cmd_key_state(const struct command *cmd, int argc, char **argv,
		  const char *config);                  /* cmd_keys.c */
int cmd_rekey(const struct command *cmd, int argc, char **argv,
	      const char *config);                      /* cmd_keys.c */
int cmd_ls(const struct command *cmd, int argc, char **argv,
	   const char *config);                         /* cmd_ls.c */
int cmd_usage(const struct command *cmd, int argc, char **argv,
	      const char *config);                      /* cmd_usage.c */
int cmd_check(const struct command *cmd, int argc, char **argv,
	      const char *config);                      /* cmd_check.c */
int cmd_init(const struct command *cmd, int argc, char **argv,
	     const char *config);                       /* cmd_check.c */
int cmd_keygen(const struct command *cmd, int argc, char **argv,
	       const char *config);                     /* cmd_keygen.c */
int cmd_help(const struct command *cmd, int argc, char **argv,
	     const char *config);                       /* help.c */

/* ---- main.c ---- */

/* Give SIGPIPE and SIGXFSZ back the dispositions the caller left them,
 * for a command that exec runs. */
void cli_restore_sigpipe(void);

/* ---- help.c: the help text ---- */

/* The list of commands and the global options, on stdout. */
void cli_print_overview(void);

/* "Usage: keyway SYNOPSIS" and the help of command name, on stdout.
 * Returns false, printing nothing, if there is no such command. */
bool cli_print_usage(const char *name);

/* ---- options.c: the command line ---- */

/* What an option does with its value. */
enum cli_option_kind {
	CLI_FLAG,  /* no value: sets *to.flag */
	CLI_VALUE, /* a value that must not be empty: *to.text */
	CLI_NAME,  /* a value kw_name_check() accepts: *to.text */
	CLI_IDENTITY, /* a user, org or owner name: *to.text */
	CLI_PROVIDER, /* a provider's name (operands only) */
	CLI_SCOPE, /* user, org or system: *to.scope */
	CLI_DAYS,  /* an optional day count: *to.days, DUE_DAYS_DEFAULT
		      without one; untouched if the option is not given */
	CLI_LIST   /* may be repeated: each value appended to *to.list */
};

/* Room for the values of a CLI_LIST option: at least argc of them. */
struct cli_list {
	const char **v;
	size_t n;
};

/*
 * One option of a command: its long name, its short one or 0, and where
 * its value goes.  A command's table ends with CLI_END; every command also
 * takes -h/--help and -c/--config, which are not listed.
 */
struct cli_option {
	const char *name;
	char short_name;
	enum cli_option_kind kind;
	union {
		bool *flag;
		const char **text;
		kw_scope *scope;
		int64_t *days;
		struct cli_list *list;
	} to;
};

#define CLI_OPT(n, s, k, field, p) { n, s, k, { .field = (p) } }
#define CLI_OPT_FLAG(n, p) CLI_OPT(n, 0, CLI_FLAG, flag, p)
#define CLI_OPT_VALUE(n, p) CLI_OPT(n, 0, CLI_VALUE, text, p)
#define CLI_OPT_NAME(n, p) CLI_OPT(n, 0, CLI_NAME, text, p)
#define CLI_OPT_IDENTITY(n, p) CLI_OPT(n, 0, CLI_IDENTITY, text, p)
#define CLI_END { NULL, 0, CLI_FLAG, { NULL } }

/* The options of a request: --user, --org, --chain, into *req. */
#define CLI_REQUEST_OPTIONS(req) \
	CLI_OPT_IDENTITY("user", &(req)->user), \
	CLI_OPT_IDENTITY("org", &(req)->org), \
	CLI_OPT_NAME("chain", &(req)->chain)

/* The options of the commands that name one stored key: --scope, --owner,
 * into *ref. */
#define CLI_KEY_OPTIONS(ref) \
	CLI_OPT("scope", 0, CLI_SCOPE, scope, &(ref)->scope), \
	CLI_OPT_IDENTITY("owner", &(ref)->owner)

/* What ls --due means without =DAYS. */
#define DUE_DAYS_DEFAULT 90

/* The command line after the options. */
struct cli_args {
	const char *config; /* in: -c before the command; out: -c after it
			       if given, as a later option wins */
	bool in_order;      /* in: options end at the first operand, whose
			       own options are not ours (exec's CMD) */
	char **pos;         /* out: the operands */
	int npos;
};

/*
 * "keyway: CMD: MESSAGE (try 'keyway CMD --help')" on stderr, or without
 * CMD when it is NULL.  Returns EXIT_USAGE.
 */
int cli_usage_error(const char *cmd, const char *fmt, ...) KW_PRINTF(2, 3);

/*
 * Parse the options before the command: -c FILE into *config; -h and -V
 * print what they ask for and return EXIT_OK.  Returns GO_ON with
 * argv[*command] the command's name, or the exit status having said what
 * is wrong.
 */
int cli_parse_global(int argc, char **argv, const char **config,
		     int *command);

/*
 * Parse the options of cmd (argv[0] is its name) into the places opts
 * names, and set args->pos and args->npos to the operands.  Returns GO_ON,
 * or the exit status when the command is over: help printed, or a usage
 * error reported.
 */
int cli_parse(const struct command *cmd, int argc, char **argv,
	      const struct cli_option *opts, struct cli_args *args);

/*
 * Check the operands against names, a NULL-terminated list of what each
 * is called ("PROVIDER"): the first min are required, no more than names
 * holds are taken, and none may be empty.  names may be NULL for none.
 * Returns GO_ON or EXIT_USAGE, having said what is wrong.
 */
int cli_operands(const char *cmd, const struct cli_args *args, int min,
		 const char *const *names);

/*
 * Check name, given as what ("--org", "provider"), against the rules of
 * its kind (CLI_NAME, CLI_IDENTITY or CLI_PROVIDER): "keyway: CMD:
 * invalid --org: why", or for a provider 'invalid provider "NAME": why'
 * (the name repeated only when it is short and can be shown).  Returns
 * GO_ON, or EXIT_USAGE having said what is wrong.
 */
int cli_check_name(const char *cmd, const char *what, const char *name,
		   enum cli_option_kind kind);

/* cli_parse(), then cli_operands() if the options leave the command to
 * go on. */
int cli_parse_operands(const struct command *cmd, int argc, char **argv,
		       const struct cli_option *opts, struct cli_args *args,
		       int min, const char *const *names);

/* Open the configuration for a request of the given options; the provider
 * is the first operand, if any.  On KW_OK *ctx must be kw_close()d. */
kw_status cli_open_request(const struct cli_args *args, kw_ctx **ctx,
			   kw_request *req);

/*
 * Open the configuration and make the actor every management command acts
 * as: the administrator of the host, named after the real uid.  Returns
 * GO_ON or the exit status, having reported the error.  *user holds the
 * actor's name and must be freed, whatever the result; *ctx must be
 * kw_close()d.
 */
int cli_open_as_admin(const char *cmd, const struct cli_args *args,
		      kw_ctx **ctx, kw_actor *actor, char **user);

/* ---- readkey.c: the key put and rotate read ---- */

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

/* Map and lock kb.  Returns GO_ON, or EXIT_ERR having said why; kb must be
 * given to cli_key_buf_free() either way. */
int cli_key_buf_alloc(const char *cmd, struct key_buf *kb);

/* Wipe and unmap kb; one never mapped is a no-op. */
void cli_key_buf_free(struct key_buf *kb);

/*
 * Read the value for put and rotate into kb: from a prompt on a terminal,
 * else all of standard input less one trailing newline.  Returns GO_ON, or
 * EXIT_ERR having said why (an empty key, one with a NUL byte, ...).
 */
int cli_read_key(const char *cmd, const char *provider, struct key_buf *kb);

/* rc, unless a signal ended the prompt: then end as it would have ended
 * us, once the caller has wiped the key.  Call last. */
int cli_key_signal_status(int rc);

/* ---- output.c: what every command prints alike ---- */

/* The exit status that stands for st. */
int cli_exit_status(kw_status st);

/* Report a library failure on stderr and return its exit status;
 * kw_last_error() must be read before any other keyway call. */
int cli_lib_error(kw_status st);

/* s, or "" for NULL. */
const char *cli_str(const char *s);

/*
 * Write a secret and a newline to stdout, unbuffered, before anything else
 * is written there.  Returns EXIT_OK or EXIT_ERR, having reported it.
 */
int cli_write_secret(const char *buf, size_t len);

/* Give back the charge for a key that never left this process; NULL is a
 * no-op. */
void cli_refund(kw_secret *key);

enum cli_time_style {
	TIME_DAY,   /* 2025-01-31 */
	TIME_ISO,   /* 2025-01-31T14:05:09Z */
	TIME_TABLE  /* 2025-01-31 14:05:09Z */
};

/* t in UTC into buf; the number itself if the calendar cannot hold it. */
void cli_format_time(int64_t t, enum cli_time_style style, char *buf,
		     size_t size);

/* The most columns a table has, and the room for a cell it formats. */
#define CLI_MAX_COLS 10
#define CLI_CELL_SIZE 32

/*
 * Fill s[0..ncols-1] with the cells of row i of rows; a cell may be
 * formatted into buf[col], which lives as long as s.
 */
typedef void cli_cells_fn(const void *rows, size_t i, const char **s,
			  char (*buf)[CLI_CELL_SIZE]);

/*
 * Make room in an array v of cap elements of size bytes for element n:
 * grown to twice its size, or to first elements when empty.  Returns the
 * array, moved perhaps, or NULL if out of memory (v is left as it was).
 */
void *cli_grow(void *v, size_t *cap, size_t n, size_t size, size_t first);

/* A table under header, its columns as wide as their widest cell. */
void cli_print_table(const char *const *header, int ncols,
		     const void *rows, size_t nrows, cli_cells_fn *cells);

/* A JSON string for s; null for NULL, and for "" too with cli_json_text().
 * NULL if jansson refuses it. */
json_t *cli_json_text(const char *s);
json_t *cli_json_str_or_null(const char *s);

/* ISO 8601 in UTC, or null for 0 (never). */
json_t *cli_json_time(int64_t t);

/* A JSON array of item(items, i) for i below n; NULL if one is NULL or out
 * of memory. */
json_t *cli_json_list(const void *items, size_t n,
		      json_t *(*item)(const void *items, size_t i));

/*
 * Print o as JSON_FLAGS lays it out, on stdout, and take it (NULL is a
 * failure too).  Returns EXIT_OK, or EXIT_ERR having said on stderr
 * "keyway: CMD: cannot encode WHAT as JSON (out of memory, or WHY)".
 */
int cli_print_json(json_t *o, const char *cmd, const char *what,
		   const char *why);

#endif /* KEYWAY_CLI_H */
