/*
 * context.h - the context (struct kw_ctx) a configuration is loaded into,
 * and the fork() watch that tells a context, a secret or a usage sink
 * inherited from a parent.  Never installed.
 */
#ifndef KEYWAY_CONTEXT_H
#define KEYWAY_CONTEXT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <libconfig.h>

#include <keyway/keyway.h>

struct kw_instance;
struct kw_keyring;
struct kwi_audit;
struct kwi_chain;
struct kwi_diag;
struct kwi_master;
struct kwi_module;
struct kwi_path;
struct kwi_provider;
struct kwi_remote;
struct kwi_usecount;

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
	struct kwi_usecount *usage;     /* usage counts waiting to be written */
	struct kwi_audit *audit;     /* NULL without keyway.audit */
	char **sensitive_env;        /* variables holding master keys,
				      * NULL-terminated; or NULL */
	bool checking;               /* kw_check(): create nothing */
	bool audit_wants_master;     /* the audit's one problem: no master
					key, which a check reports for the
					stores too */
	pid_t pid;                   /* the process that opened it */
	unsigned forks;              /* kwi_forks() when it was opened */
	enum kwi_log_stderr log_stderr; /* keyway.log.stderr */
	int log_level;               /* keyway.log.level: a KW_LOG_* */
	struct kwi_remote *remote;   /* keyway.daemon: a client of keywayd,
				      * with no backend of its own; or NULL */
	struct kwi_life *life;       /* what its secrets know of it */
};

/*
 * What a secret keeps of the context that handed it out, which may be
 * closed before the secret is freed: whether it still is open.  Every
 * secret holds a reference, as the context does until kw_close().
 */
struct kwi_life {
	atomic_uint refs;
	atomic_bool closed;
};

/* A reference to ctx's life, for a secret it hands out (or NULL when it
 * has none, a context still being made). */
struct kwi_life *kwi_life_ref(struct kw_ctx *ctx);
/* Drop a reference; NULL is a no-op. */
void kwi_life_put(struct kwi_life *l);

/* The configuration to read: path, else $KEYWAY_CONFIG, else
 * kw_default_config(). */
const char *kwi_config_path(const char *path);
/* A context with nothing loaded, stamped with the process it belongs to
 * (*out, for kw_close()).  KW_OK, or a failure kw_last_error() tells. */
kw_status kwi_ctx_new(struct kw_ctx **out);
/*
 * Load the configuration at path (as kwi_config_path() takes it) into a
 * fresh context and open its backends; `checking` for kw_check(), whose
 * opens create nothing; keep_going: open every backend even after one
 * failed.  Returns d->first; *out is the context, for kw_close(), even
 * then (NULL only when none could be made).
 */
kw_status kwi_ctx_load(struct kw_ctx **out, const char *path,
		       struct kwi_diag *d, bool keep_going, bool checking);

/* The backend of ctx named name, or NULL. */
struct kw_instance *kwi_find_backend(const struct kw_ctx *ctx,
				     const char *name);

/* How many fork()s lie between this process and the library's first
 * kw_open(): what a context, secret or usage sink compares with the
 * number it recorded to tell it was inherited. */
unsigned kwi_forks(void);
/* KW_OK, or KW_ERR_INVAL saying that ctx belongs to another process. */
kw_status kwi_ctx_usable(const struct kw_ctx *ctx);

#endif /* KEYWAY_CONTEXT_H */
