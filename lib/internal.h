/*
 * internal.h - declarations shared by the files of libkeyway.  Never
 * installed.  Library-internal symbols shared across files carry the kwi_
 * prefix; everything else is static.
 */
#ifndef KEYWAY_INTERNAL_H
#define KEYWAY_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/stat.h>
#include <sys/types.h>

#include <libconfig.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "audit.h"
#include "config_audit.h"
#include "config_master.h"
#include "crypto.h"
#include "error.h"
#include "fsutil.h"
#include "secmem.h"
#include "usecount.h"

#define KWI_UNUSED_RESULT __attribute__((warn_unused_result))

struct kw_ctx;
struct kwi_query_in;

/* ---- modules (loader.c) ---- */

struct kwi_module {
	struct kwi_module *next;
	char *name;                    /* "env" */
	char *path;                    /* file it was loaded from */
	void *handle;                  /* dlopen() handle */
	const struct kw_module *desc;  /* descriptor */
	/* Operations, NULL where the module's descriptor is too short. */
	kw_status (*op_open)(const kw_host *, kw_instance *, void **);
	void (*op_close)(void *);
	kw_status (*op_check)(void *, kw_reply *);
	kw_status (*op_lookup)(void *, const kw_query *);
	kw_status (*op_put)(void *, const kw_store_put *, kw_reply *);
	kw_status (*op_set_active)(void *, const kw_store_key *, bool,
				   kw_reply *);
	kw_status (*op_remove)(void *, const kw_store_key *, kw_reply *);
	kw_status (*op_list)(void *, kw_scope, const char *,
			     kw_store_list_fn *, void *, kw_reply *);
	kw_status (*op_rekey)(void *, uint64_t *, kw_reply *);
	kw_status (*op_used)(void *, const kw_store_key *, uint64_t, int64_t,
			     kw_reply *);
	kw_status (*op_charge)(void *, kw_charge *, bool, kw_reply *);
	kw_status (*op_refund)(void *, const kw_charge *, kw_reply *);
	kw_status (*op_usage)(void *, const kw_usage_filter *, kw_usage_fn *,
			      void *, kw_reply *);
	void (*op_walk_end)(void *);
	kw_status (*op_used_batch)(void *, const kw_store_use *, size_t,
				   kw_reply *);
	bool (*op_reads_env)(void *, const char *, size_t);
};

/*
 * Load module `spec` (a name, looked up in each directory of
 * $KEYWAY_MODULE_DIR and then the built-in one; or an absolute path)
 * unless it is already in *list.  On failure writes the reason into why.
 */
kw_status kwi_module_load(struct kwi_module **list, const char *spec,
			  struct kwi_module **out, char *why, size_t whylen);
void kwi_module_unload_all(struct kwi_module *list);

/* ---- providers and names ---- */

/* A provider's key format (keyway.providers, or built in). */
struct kwi_provider {
	char *name;
	char *prefix;
	size_t min_len;
	size_t max_len;
};

/* A built-in provider format, or NULL. */
const struct kwi_provider *kwi_builtin_provider(const char *name);

/* Does value look like a key of this provider?  Says why not. */
kw_status kwi_provider_check(const struct kw_ctx *ctx, const char *provider,
			     const char *value, size_t len, char *why,
			     size_t whylen);

/* Request names: shared by resolution and management. */
bool kwi_valid_provider(const char *s);
bool kwi_valid_identity(const char *s);
/* kw_name_check(), where a NULL name (none given) passes. */
kw_status kwi_check_name(const char *what, const char *s) KWI_UNUSED_RESULT;
/* The first character of s that a terminal or a log must not get as it is
 * (a control or bidirectional control character, U+2028 or U+2029, or a
 * byte that is not UTF-8), or NULL; *len: its length in bytes; *why (may
 * be NULL): what it is, as kwi_check_name() says it. */
const char *kwi_unshowable(const char *s, size_t *len, const char **why);

/* ---- configuration (config.c) ---- */

struct kwi_path {
	const char *name;
	char *value;
};

/* A quota of a backend: `limit` requests per window, counted per user,
 * per org or for everyone, across providers or for each provider. */
enum kwi_per {
	KWI_PER_USER = 1,
	KWI_PER_ORG,
	KWI_PER_GLOBAL,
	KWI_PER_PROVIDER,       /* everyone, one count per provider */
	KWI_PER_USER_PROVIDER,  /* one count per user and provider */
	KWI_PER_ORG_PROVIDER    /* one count per org and provider */
};

struct kwi_quota {
	uint64_t limit;
	int64_t period;             /* seconds; 0 for a calendar month */
	enum kwi_per per;
	char label[64];             /* "10/day per user+provider" */
};

/* One backend of keyway.conf, or the ledger: the kw_instance modules see. */
struct kw_instance {
	char *name;
	char *label;                /* "backend \"NAME\"" or "keyway.ledger" */
	kw_instance_role role;
	struct kwi_quota *quotas;
	size_t nquotas;
	const char *file;           /* where it is declared */
	int line;
	config_setting_t *setting;  /* its group */
	struct kwi_module *module;
	kw_scope scope;
	struct kwi_path *paths;     /* KW_SETTING_PATH values made absolute */
	size_t npaths;
	void *state;
	bool opened;
	struct kwi_diag *diag;      /* where open() errors go */
	struct kw_ctx *ctx;
};

/* A chain entry with its control compiled to one action per answer. */
struct kwi_entry {
	struct kw_instance *backend;
	uint8_t action[KWI_NANSWERS]; /* kw_action */
	uint8_t skip[KWI_NANSWERS];
};

struct kwi_chain {
	char *name;
	struct kwi_entry *entries;
	size_t n;
};

/* Whether host->log() lines also go to stderr. */
enum kwi_log_stderr {
	KWI_LOG_TERMINAL = 0, /* when stderr is a terminal (the default) */
	KWI_LOG_ALWAYS,
	KWI_LOG_NEVER
};

struct kw_ctx {
	config_t cfg;
	char *path;
	char *dir;
	struct kwi_module *modules;
	struct kw_instance *backends;
	size_t nbackends;
	struct kwi_chain *chains;
	size_t nchains;
	const struct kwi_chain *default_chain;
	struct kwi_path *sources;   /* paths of the included files */
	size_t nsources;
	struct kwi_master *masters; /* [0] current, then old ones (guarded) */
	size_t nmasters;
	size_t masters_size;
	struct kw_keyring *keyrings;
	struct kwi_provider *providers;
	size_t nproviders;
	struct kw_instance *ledger;  /* NULL without keyway.ledger */
	bool ledger_allow;           /* on_unavailable = "allow" */
	struct kwi_usage *usage;     /* usage counts waiting to be written */
	struct kwi_audit *audit;     /* NULL without keyway.audit */
	char **sensitive_env;        /* variables holding master keys,
				      * NULL-terminated; or NULL */
	bool checking;               /* kw_check(): create nothing */
	pid_t pid;                   /* the process that opened it */
	unsigned forks;              /* kwi_forks() when it was opened */
	enum kwi_log_stderr log_stderr; /* keyway.log.stderr */
	int log_level;               /* keyway.log.level: a KW_LOG_* */
};

/* ---- fork() (api.c) ---- */

/* How many fork()s lie between this process and the library's first
 * kw_open(): what a context, secret or usage sink compares with the
 * number it recorded to tell it was inherited. */
unsigned kwi_forks(void);
/* KW_OK, or KW_ERR_INVAL saying that ctx belongs to another process. */
kw_status kwi_ctx_usable(const struct kw_ctx *ctx);

/* The file a setting is written in: the configuration's path, or the
 * path of the included file. */
const char *kwi_source_path(struct kw_ctx *ctx, const config_setting_t *s);

/*
 * Parse and validate the file, load the modules it names, check every
 * backend's settings against its module.  Does not open backends.  Every
 * problem goes to d; returns d->first.
 */
kw_status kwi_config_load(struct kw_ctx *ctx, const char *path,
			  struct kwi_diag *d);
void kwi_config_free(struct kw_ctx *ctx);

/* ---- chains (chain.c) ---- */

/*
 * Compile a control ("sufficient", "[found=done default=die]", ...) for an
 * entry with `remaining` entries after it.  On failure writes the reason.
 */
kw_status kwi_control_parse(const char *text, size_t remaining,
			    struct kwi_entry *e, char *why, size_t whylen);

/* The request, checked and with its defaults applied. */
struct kwi_query_in {
	const char *chain;
	const char *provider;
	const char *user;
	const char *org;
};

kw_status kwi_trace_new(const struct kwi_chain *c, kw_trace **out);
/*
 * Walk chain c for in.  Without a trace: on KW_OK *out is the secret; on
 * failure kw_last_error() says why.  With a trace t: fills it (the secret is
 * never kept) and returns the verdict.
 */
kw_status kwi_walk(const struct kwi_chain *c, const struct kwi_query_in *in,
		   kw_trace *t, kw_secret **out);

/* ---- the host side of the module ABI (host.c) ---- */

extern const kw_host kwi_host;

struct kwi_query_in;

/* ---- quotas (quota.c) ---- */

/* What a resolve charged, kept with its secret for a refund. */
struct kwi_charged {
	struct kw_instance *ledger;
	int64_t usage_id;
	size_t nslots;
	kw_quota_slot slots[];    /* counter strings are malloc'd */
};

int64_t kwi_now(void);
#ifdef KW_TEST_SEAMS
void kwi_test_set_clock(int64_t (*clock)(void));
#endif
/* The fixed UTC window of `period` seconds (0: calendar month) that holds
 * `now`. */
void kwi_window(int64_t period, int64_t now, int64_t *start, int64_t *end);

/*
 * Charge every quota of backend b for this request in the ledger.  KW_OK
 * (*out: what to refund, NULL on a dry run), KW_ERR_DENIED with the reason
 * in detail, or another failure.
 */
kw_status kwi_quota_charge(struct kw_ctx *ctx, const struct kw_instance *b,
			   const struct kwi_query_in *in, bool dry_run,
			   struct kwi_charged **out, char *detail,
			   size_t detaillen);
kw_status kwi_quota_refund(struct kwi_charged *c);
/* The word of keyway.conf for per ("user+provider"), and back; false for a
 * word that is not one. */
const char *kwi_per_str(enum kwi_per per);
bool kwi_per_parse(const char *word, enum kwi_per *per);
void kwi_charged_free(struct kwi_charged *c);

/*
 * A resolved secret: one guarded allocation holding this header, the name
 * of the backend that answered and the value.
 */
struct kw_secret {
	size_t size;         /* bytes allocated */
	size_t len;          /* of value */
	char *value;         /* inside data[] */
	bool reported;
	kw_outcome outcome;
	struct kwi_charged *charged; /* quotas to refund on KW_UNUSED */
	struct kwi_usage *usage;     /* where a use is counted, or NULL */
	struct kw_instance *store;   /* the store backend that answered */
	unsigned forks;              /* kwi_forks() when it was made */
	kw_scope scope;
	const char *owner;   /* inside data[], or NULL */
	const char *provider; /* inside data[] */
	char data[];         /* backend, value, owner, provider; NUL after each */
};

/* The answer a module is building. */
struct kw_reply {
	struct kw_secret *secret; /* NULL until the module replies */
	struct kwi_charged *charged; /* quotas charged for this answer */
	const char *backend;
	size_t backend_len;
	const char *owner;        /* of the key asked for, or NULL */
	const char *provider;
	char detail[256];
};

void kwi_reply_init(struct kw_reply *r, const char *backend);
/* Free a secret the chain did not take. */
void kwi_reply_clear(struct kw_reply *r);
void kwi_secret_destroy(struct kw_secret *s);

/* Open every backend; on the first failure close those opened. */
kw_status kwi_backends_open(struct kw_ctx *ctx, struct kwi_diag *d,
			    bool keep_going);
void kwi_backends_close(struct kw_ctx *ctx);

#endif /* KEYWAY_INTERNAL_H */
