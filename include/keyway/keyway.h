/*
 * keyway.h - the application interface of libkeyway.
 *
 * An application asks one question: "which API key do I use for provider P
 * on behalf of user U in organization O?".  libkeyway answers it by walking a
 * chain of backends declared in keyway.conf(5).
 *
 *     kw_ctx *ctx;
 *     kw_secret *key;
 *     kw_request req = KW_REQUEST_INIT;
 *
 *     if (kw_open(&ctx, NULL) != KW_OK)
 *         errx(1, "%s", kw_last_error());
 *     req.provider = "anthropic";
 *     req.user = "alice";
 *     req.org = "acme";
 *     if (kw_resolve(ctx, &req, &key) == KW_OK) {
 *         use(kw_secret_value(key));
 *         kw_secret_free(key);
 *     }
 *     kw_close(ctx);
 *
 * Thread safety: a kw_ctx may be shared by any number of threads once
 * kw_open() has returned; kw_resolve() and kw_explain() may run concurrently
 * on it.  kw_close() must not race with any other call on the same context.
 * A kw_secret or kw_trace belongs to the thread that holds it.
 *
 * Files: libkeyway opens what it keeps open close-on-exec, so a program may
 * run others while a context is open.  One exception is libcurl's: before
 * libcurl 8.8, each handle a Vault backend or a keywayd client keeps has a
 * socket pair of libcurl's own (its wake-up pipe) that libcurl opens
 * without close-on-exec and does not show; a program it runs inherits
 * those two descriptors, which hold no key.
 *
 * fork(): a child may only kw_close() a context it inherited; see
 * kw_close().
 *
 * Link with `pkg-config --libs keyway`.
 */
#ifndef KEYWAY_KEYWAY_H
#define KEYWAY_KEYWAY_H

#include <stddef.h>
#include <stdint.h>

#include <keyway/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define KW_EXPORT __attribute__((visibility("default")))
#else
#define KW_EXPORT
#endif

/* A static English name for st ("ok", "notfound", ...).  Never NULL. */
KW_EXPORT const char *kw_status_str(kw_status st);

/*
 * A one-line description of the last failure in the calling thread, e.g.
 * "/etc/keyway/keyway.conf:14: chain "default": unknown backend "org_kyes"".
 * Valid until the next keyway call in the same thread.  Never NULL; never
 * contains a secret.  Only meaningful right after a call failed.
 */
KW_EXPORT const char *kw_last_error(void);

/* The library version as "MAJOR.MINOR.PATCH". */
KW_EXPORT const char *kw_version(void);

typedef struct kw_ctx kw_ctx;
typedef struct kw_secret kw_secret;
typedef struct kw_trace kw_trace;

/*
 * A request.  Always initialise with KW_REQUEST_INIT (or kw_request_init())
 * so that `size` is set: later versions add fields at the end, and the
 * library reads only the fields that the caller's size covers.
 */
typedef struct kw_request {
	size_t size;          /* sizeof(kw_request) as the caller compiled it */
	const char *chain;    /* chain name; NULL means "default" */
	const char *provider; /* required: "anthropic", "openai", ... */
	const char *user;     /* on whose behalf; NULL if none */
	const char *org;      /* organization; NULL if none */
} kw_request;

#define KW_REQUEST_INIT { sizeof(kw_request), NULL, NULL, NULL, NULL }

/* Zero *req and set its size. */
KW_EXPORT void kw_request_init(kw_request *req);

/*
 * Load the configuration at config_path (NULL: $KEYWAY_CONFIG if set and the
 * process is not setuid, else the compiled-in default), load every module it
 * names, open every backend.  Fails closed: on any problem nothing is opened,
 * *ctx is NULL and kw_last_error() says "file:line: what is wrong".
 *
 * On success *ctx must be released with kw_close().
 *
 * Statuses: KW_OK, KW_ERR_CONFIG, KW_ERR_MODULE, KW_ERR_PERM, KW_ERR_IO,
 * KW_ERR_NOMEM, KW_ERR_INVAL, KW_ERR_CRYPTO (a store sealed under a master
 * key that is not configured), KW_ERR_BACKEND (a backend that failed to
 * open).
 *
 * A configuration whose keyway section names keywayd(8)'s socket
 * (keyway.daemon, keyway.conf(5)) makes the context a client of that
 * daemon: it opens no module, store or master key, and connects to
 * nothing yet (it opens while the daemon is down); kw_resolve(),
 * kw_explain(), kw_secret_report() and kw_secret_free() ask the daemon,
 * with the statuses and messages they have in-process, and the key
 * management and usage calls return KW_ERR_UNSUPPORTED.
 *
 * fork(): open a context in each process that uses one, after the fork
 * (a pre-forking server opens it in each worker; gunicorn: a post_fork
 * hook), or kw_close() every context before forking.  A child whose
 * parent still has a context open may open one of its own, but not on a
 * file the parent's context has open (an sqlite store or ledger): SQLite's
 * record of that file's locks is the parent's, and a second connection to
 * it in the child can hang or corrupt it.  That open fails with
 * KW_ERR_INVAL and "file:line: backend "NAME": PATH was opened by process
 * N before fork(): a child cannot open it again; ...".  Files the parent
 * never opened, or closed before the fork, open as usual.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_open(kw_ctx **ctx, const char *config_path);

/*
 * Close every backend and free ctx.  kw_close(NULL) is a no-op.
 *
 * fork(): a context belongs to the process that opened it.  A child of
 * that process may only kw_close() the context it inherited: there that
 * never blocks and writes nothing, frees the child's copy of the
 * context's own memory (its master keys wiped) and leaves the backends'
 * connections, files and modules as they are, since they are the
 * parent's.  The usage counts waiting to be written are the parent's too,
 * and the parent writes them.  Every other call on an inherited context
 * fails with KW_ERR_INVAL and kw_last_error() "this context was opened by
 * process N; open a new one after fork()", except kw_sensitive_env(),
 * which still answers.  A child that needs keys opens its own context.
 * A secret the child inherited may be read and kw_secret_free()d (its use
 * is counted once, by the parent, which frees its own copy);
 * kw_secret_report() on it fails with KW_ERR_INVAL.
 *
 * fork() waits for keyway's own thread, which writes usage counts, to
 * finish a write under way, so that the child never inherits a module's
 * lock taken.  It does not wait for the application's threads: a fork
 * while another thread is inside a keyway call (or any library's) leaves
 * the child only what POSIX allows after fork() in a threaded process,
 * calls that are async-signal-safe; kw_close() of the inherited context
 * does not block then either, but a new kw_open() in that child may.
 * Fork while no other thread is in a keyway call, or open after fork().
 */
KW_EXPORT void kw_close(kw_ctx *ctx);

/*
 * Resolve req through its chain.  On KW_OK *out holds the secret and must be
 * released with kw_secret_free(); on failure *out is NULL and the status is
 * the chain's verdict: KW_ERR_NOTFOUND, KW_ERR_DENIED, KW_ERR_UNAVAIL, or an
 * error (KW_ERR_BACKEND, KW_ERR_CRYPTO, ...), with kw_last_error() naming
 * the entry that decided it.  KW_ERR_INVAL for a malformed request, an
 * unknown chain, or a context inherited across fork() (see kw_close()).
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_resolve(kw_ctx *ctx, const kw_request *req,
				    kw_secret **out);

/*
 * The secret, NUL-terminated, in locked memory that is excluded from core
 * dumps and wiped by kw_secret_free().
 * WARNING: do not copy it into ordinary memory you do not wipe, and never
 * log it.
 */
KW_EXPORT const char *kw_secret_value(const kw_secret *s);

/* Length of kw_secret_value() in bytes. */
KW_EXPORT size_t kw_secret_len(const kw_secret *s);

/* Name of the backend (as declared in keyway.conf) that answered. */
KW_EXPORT const char *kw_secret_backend(const kw_secret *s);

/* What the application did with a resolved secret. */
typedef enum kw_outcome {
	KW_USED = 0,  /* the upstream request was sent (the default) */
	KW_UNUSED = 1 /* it was never sent: refund the charge */
} kw_outcome;

/*
 * Report what became of the secret.  A secret that is freed unreported
 * counts as KW_USED.  A secret can be reported once: a second report is
 * KW_ERR_INVAL.  KW_UNUSED refunds the quota the resolve charged.
 * Report before kw_close() of the context that produced it: after that a
 * report fails with KW_ERR_INVAL (a charge can no longer be refunded), and
 * only the accessors and kw_secret_free() work on it.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_secret_report(kw_secret *s, kw_outcome outcome);

/* Wipe and free s.  kw_secret_free(NULL) is a no-op.  May be called after
 * kw_close() of the context that produced it, but a use counted then is
 * not written to its store (the use counts of `keyway ls` are written
 * while the context is open, and at kw_close()).  A key from keywayd (a
 * client context, see kw_open()) that was not reported is reported used
 * to the daemon here, which is one request to it, also after kw_close(). */
KW_EXPORT void kw_secret_free(kw_secret *s);

/*
 * Explain how req resolves: every chain entry that was asked, what it
 * answered and what the chain did next, without revealing the secret.
 * On KW_OK *out must be released with kw_trace_free(); the resolution's own
 * verdict is kw_trace_result(*out).  Explaining charges no quota.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_explain(kw_ctx *ctx, const kw_request *req,
				    kw_trace **out);

/* What a chain entry's control made of a backend's answer. */
typedef enum kw_action {
	KW_ACTION_DONE = 0,     /* end: return the secret */
	KW_ACTION_CONTINUE = 1, /* go on to the next entry */
	KW_ACTION_DIE = 2,      /* end with this status */
	KW_ACTION_SKIP = 3      /* go on, skipping `skip` entries */
} kw_action;

/* One step of a trace.  Fields may be added at the end. */
typedef struct kw_trace_step {
	unsigned index;       /* 1-based position in the chain */
	const char *backend;  /* backend name from keyway.conf */
	const char *module;   /* module that serves it */
	kw_status status;     /* what the backend answered */
	kw_action action;     /* what the control made of it */
	unsigned skip;        /* entries skipped, for KW_ACTION_SKIP */
	const char *detail;   /* why, in words; never a secret; "" if none */
	const char *masked;   /* for a found secret, e.g. "sk-a****xyz9"; else "" */
} kw_trace_step;

/* Name of the chain that was walked. */
KW_EXPORT const char *kw_trace_chain(const kw_trace *t);
/* Number of steps. */
KW_EXPORT size_t kw_trace_len(const kw_trace *t);
/* Step i (0-based), or NULL if out of range.  Valid until kw_trace_free(). */
KW_EXPORT const kw_trace_step *kw_trace_get(const kw_trace *t, size_t i);
/* The verdict: what kw_resolve() would have returned. */
KW_EXPORT kw_status kw_trace_result(const kw_trace *t);
/* Name of the backend that answered on KW_OK, else NULL. */
KW_EXPORT const char *kw_trace_backend(const kw_trace *t);
/* Why the chain ended as it did, in words. */
KW_EXPORT const char *kw_trace_summary(const kw_trace *t);
KW_EXPORT void kw_trace_free(kw_trace *t);
/* Name of an action ("done", "continue", "die", "skip"). */
KW_EXPORT const char *kw_action_str(kw_action a);

/*
 * Check a configuration as `keyway check` does: parse it, load every module,
 * open every backend, run every backend's health check, and look at the
 * permissions of every file involved.  Every problem found is passed to
 * report, one line at a time ("file:line: what is wrong"), once the check
 * is over, in the order of the files and lines they are on (a problem of
 * a whole file, line 0, first); unlike kw_open() it does not stop at the
 * first one.  It creates nothing: a store, ledger
 * or audit file that does not exist is a problem (kw_init() makes them),
 * and so is a store or ledger this process could not write to.
 *
 * Returns KW_OK when nothing is wrong, else the status of the problem found
 * first (the one kw_open() would fail with).
 */
typedef void kw_report_fn(void *arg, const char *line);
KW_EXPORT KW_WARN_UNUSED kw_status kw_check(const char *config_path, kw_report_fn *report,
				  void *arg);

/* One problem kw_check_problems() found.  Fields may be added at the end. */
typedef struct kw_problem {
	const char *file;    /* the file it is in: the configuration, an
				included file, a key file, a module... */
	int line;            /* its line in file, or 0 for the whole file */
	const char *message; /* what is wrong, one line, without file and
				line; never a secret */
	kw_status status;    /* the status it makes kw_check() return */
} kw_problem;

/* Called once per problem; p and its strings live for the call only. */
typedef void kw_problem_fn(void *arg, const kw_problem *p);

/*
 * kw_check(), with every problem handed to fn in its parts rather than as
 * one line ("file:line: message" is file, line and message), for a
 * program that shows problems in its own form (`keyway check --json`).
 * Returns what kw_check() returns.  Thread-safe as kw_check() is.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_check_problems(const char *config_path,
						     kw_problem_fn *fn,
						     void *arg);

/*
 * Make the files a configuration names that do not exist yet, as `keyway
 * init` does: load it, open every backend and the ledger as kw_open() does
 * (a sqlite store or ledger is created with mode 0600 and its schema) and
 * create the audit file (mode 0600); then close everything.  Files that
 * exist are opened and checked but not changed, so running it again
 * creates nothing.  kw_check() creates nothing at all: run this first.
 *
 * created (may be NULL) gets one line per file made,
 * "created PATH (backend \"NAME\")" ("keyway.ledger", "keyway.audit");
 * report gets every problem as kw_check() reports them, and a file a
 * module does not create (a dotenv file, a master key file) is one.  When
 * nothing went wrong making them, the configuration is then checked as
 * kw_check() does, with the same lines (a ledger that cannot be reached;
 * for a client of keywayd, which has nothing to make, a daemon that does
 * not answer).
 *
 * Returns KW_OK when nothing is wrong, else the status of the first
 * problem.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_init(const char *config_path,
					   kw_report_fn *created,
					   kw_report_fn *report, void *arg);

/*
 * The configuration path kw_open(ctx, NULL) would use.  Static storage.
 */
KW_EXPORT const char *kw_default_config(void);

/*
 * Is `name` a name keyway takes (a user, org, owner, key name, provider,
 * chain or backend)?  Every function that takes a name checks it so; a
 * program may check a name before it gets that far, as `keyway` checks
 * its options.  A name is UTF-8 without the characters a terminal acts on
 * or that change how text around them reads: control characters (U+0000
 * to U+001F, DEL, U+0080 to U+009F), the bidirectional embeddings,
 * overrides and isolates (U+202A to U+202E, U+2066 to U+2069) and marks
 * (U+200E, U+200F, U+061C), and the line and paragraph separators
 * (U+2028, U+2029).  Each kind of name has further rules of its
 * own (a provider is lower-case ASCII, a user has no blanks, ...).
 *
 * what: what the name is, for the message ("key name"; NULL: "name").
 * Returns KW_OK, or KW_ERR_INVAL with kw_last_error() saying which
 * character is wrong and where ("invalid key name: it holds a control
 * character (at byte 3)"), never repeating the name itself.  Thread-safe.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_name_check(const char *what,
						 const char *name);

/* ---- key management ----
 *
 * On a context that is a client of keywayd (keyway.daemon, see kw_open()),
 * kw_backend_scope(), the kw_key_*() calls, kw_rekey() and kw_usage()
 * return KW_ERR_UNSUPPORTED: management is not served through the daemon.
 */

/* "user", "org", "system" (or "none"). */
KW_EXPORT const char *kw_scope_str(kw_scope scope);

/*
 * Whether ctx's configuration declares a backend named `backend`, and its
 * scope: *scope gets KW_SCOPE_USER, KW_SCOPE_ORG or KW_SCOPE_SYSTEM, or
 * KW_SCOPE_NONE for a backend that takes no scope.  KW_ERR_INVAL when there
 * is no such backend ("FILE: no backend \"NAME\"" in kw_last_error()),
 * or when `backend` is not a valid name (as kw_name_check() says), *scope
 * being KW_SCOPE_NONE then.  Lets a program check what it was told
 * before it asks for a key to store.  Thread-safe.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_backend_scope(const kw_ctx *ctx,
						    const char *backend,
						    kw_scope *scope);

/* The role of the actor in its organization. */
typedef enum kw_role {
	KW_ROLE_NONE = 0,
	KW_ROLE_VIEWER = 1,
	KW_ROLE_MEMBER = 2,
	KW_ROLE_ADMIN = 3,
	KW_ROLE_OWNER = 4,
	KW_ROLE_SYSADMIN = 5 /* administers the keyway host itself */
} kw_role;

/*
 * Who asks for a change.  The rules:
 *   - org keys: the owner or an admin of that org (actor.org == owner);
 *   - user keys: that user (actor.user == owner);
 *   - system keys: a system administrator;
 *   - a system administrator may manage every key;
 *   - members and viewers of an org see none of its keys' fields.
 * Anything else is KW_ERR_PERM.
 */
typedef struct kw_actor {
	size_t size;      /* sizeof(kw_actor) as the caller compiled it */
	const char *user; /* who acts; NULL for none */
	const char *org;  /* the org the role is held in; NULL for none */
	kw_role role;
} kw_actor;

#define KW_ACTOR_INIT { sizeof(kw_actor), NULL, NULL, KW_ROLE_NONE }

/*
 * Which key: a store backend of keyway.conf, owner, provider.  A scoped
 * store backend holds the keys of its own scope only (an "org" backend the
 * org keys); `scope` may be left KW_SCOPE_NONE, else it must match.
 */
typedef struct kw_key_ref {
	size_t size;          /* sizeof(kw_key_ref) as the caller compiled it */
	const char *backend;  /* a backend whose module stores keys */
	kw_scope scope;       /* KW_SCOPE_NONE: the backend's */
	const char *owner;    /* user or org name; NULL for system keys */
	const char *provider; /* "anthropic", ... */
} kw_key_ref;

#define KW_KEY_REF_INIT { sizeof(kw_key_ref), NULL, KW_SCOPE_NONE, NULL, NULL }

/*
 * Store a key, sealed with the master key.  The value is checked against
 * the provider's format first ("sk-ant-" for anthropic, ...; see
 * keyway.conf(5), providers).  `name` is a label (NULL: none; kept on
 * rotation when NULL).  The value is copied; the caller wipes its own.
 *
 * Statuses: KW_OK, KW_ERR_PERM (actor rules), KW_ERR_EXISTS,
 * KW_ERR_NOTFOUND, KW_ERR_INVAL (bad reference or value),
 * KW_ERR_UNSUPPORTED (the backend does not store keys), KW_ERR_CRYPTO,
 * KW_ERR_UNAVAIL, KW_ERR_BACKEND.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_key_put(kw_ctx *ctx,
					      const kw_actor *actor,
					      const kw_key_ref *ref,
					      const char *value, size_t len,
					      const char *name,
					      kw_put_mode mode);

/* Enable or disable a key: a disabled key is never handed out. */
KW_EXPORT KW_WARN_UNUSED kw_status kw_key_set_active(kw_ctx *ctx,
						     const kw_actor *actor,
						     const kw_key_ref *ref,
						     int active);

/* Delete a key: the record and its bytes are erased from the store. */
KW_EXPORT KW_WARN_UNUSED kw_status kw_key_delete(kw_ctx *ctx,
						 const kw_actor *actor,
						 const kw_key_ref *ref);

/* What kw_key_list() tells of one key: never the key itself. */
typedef struct kw_key_info {
	const char *backend;
	kw_scope scope;
	const char *owner;     /* NULL for system keys */
	const char *provider;
	const char *name;      /* "" if none */
	int active;
	const char *masked;    /* "sk-a****xyz9" */
	uint64_t usage_count;
	int64_t last_used;     /* seconds since the epoch; 0: never */
	int64_t created;
	int64_t rotated;       /* when the value was last set */
	const char *key_id;    /* id of the master key that sealed it */
} kw_key_info;

/* Called once per key; a status other than KW_OK stops the listing and is
 * returned by kw_key_list().  info is valid during the call only. */
typedef kw_status kw_key_list_fn(void *arg, const kw_key_info *info);

/*
 * List the keys the actor may see in a store backend (NULL: every backend
 * that can list), for one owner (NULL: every owner).
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_key_list(kw_ctx *ctx,
					       const kw_actor *actor,
					       const char *backend,
					       const char *owner,
					       kw_key_list_fn *fn, void *arg);

/*
 * Re-seal every key of a store backend under the current master key, in
 * one transaction: readers see every key under the old master key or every
 * key under the new one, and both keep resolving as long as the old key is
 * listed in keyway.old_master_keys.  Only a system administrator may.
 * *count (if not NULL) gets the number of keys re-sealed.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_rekey(kw_ctx *ctx, const kw_actor *actor,
					    const char *backend,
					    uint64_t *count);

/* ---- usage ---- */

/*
 * Read the usage log of keyway.ledger, the rows that filter matches (NULL:
 * every row), calling fn for each.  A system administrator sees every
 * row, an org's owners and admins the rows of that org, anyone else the
 * rows of their own user.
 *
 * Statuses: KW_OK, a status fn returned, KW_ERR_INVAL (no context or
 * callback, a bad actor, or a filter whose size this library does not
 * know: one not set with KW_USAGE_FILTER_INIT, or from a newer keyway.h),
 * KW_ERR_UNSUPPORTED without a ledger that keeps a log, or the ledger's
 * failure.  Safe to call from any thread.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_usage(kw_ctx *ctx, const kw_actor *actor,
					    const kw_usage_filter *filter,
					    kw_usage_fn *fn, void *arg);

/* ---- programs that answer for others ---- */

/*
 * A request that a program answering for others (keywayd) refused before
 * it reached the library: what was asked, who asked, and why.  Always
 * initialise with KW_REFUSAL_INIT so that `size` is set: later versions
 * add fields at the end, and the library reads only the fields that the
 * caller's size covers.
 */
typedef struct kw_refusal {
	size_t size;          /* sizeof(kw_refusal) as the caller compiled it */
	const char *op;       /* what was asked: "resolve", "put", ... */
	const char *caller;   /* who asked: a user name, "uid 1001",
				 "tcp 127.0.0.1:40112" */
	int64_t uid;          /* the caller's uid; -1 when it has none */
	int64_t pid;          /* the caller's process; 0 when not known */
	const char *chain;    /* the chain asked for; NULL if none */
	const char *provider; /* NULL if none */
	const char *reason;   /* why, one line; never a secret */
} kw_refusal;

#define KW_REFUSAL_INIT \
	{ sizeof(kw_refusal), NULL, NULL, -1, 0, NULL, NULL, NULL }

/*
 * Record r in ctx's audit trail (keyway.audit) as an event "refused", so
 * that the trail shows the requests turned away as well as those served.
 * KW_OK at once when ctx has no audit trail.  KW_ERR_INVAL for a NULL ctx
 * or r, an r without op, caller or reason, one of a size this library
 * does not know, or a context inherited across fork(); else what writing
 * the trail gives, as for a resolve (KW_ERR_IO unless
 * keyway.audit.on_failure = "allow").  Thread-safe.
 */
KW_EXPORT KW_WARN_UNUSED kw_status kw_audit_refusal(kw_ctx *ctx,
						    const kw_refusal *r);

/*
 * The environment variables ctx read master keys or passphrases from, NULL
 * terminated (or NULL when it reads none).  A program that runs others
 * with the environment it was given must remove them first, as
 * `keyway exec` does.  Valid until kw_close().
 */
KW_EXPORT const char *const *kw_sensitive_env(const kw_ctx *ctx);

/*
 * Whether ctx's configuration reads environment variable `name`, which is a
 * variable's name or a whole environment entry "NAME=VALUE" (only NAME is
 * looked at, the value is never read): a variable a master key or
 * passphrase may come from (KEYWAY_MASTER_KEY, API_KEY_ENCRYPTION_KEY,
 * KEYWAY_PASSPHRASE, and those keyway.master_key names), or one a backend
 * may hand out as a key (for the env module: a name of its `vars`, a name
 * it makes from a provider's, such as OPENAI_API_KEY, and every name its
 * dotenv file sets).  A program that runs others with the environment it
 * was given must remove these first, as `keyway exec` does: a key then
 * reaches them only through a chain, its quotas and its audit trail.
 * Returns 1 if it does, 0 if not (0 for a NULL ctx or name).  Thread-safe.
 */
KW_EXPORT int kw_reads_env(const kw_ctx *ctx, const char *name);

/*
 * Write a masked form of a len-byte secret into buf (size bytes), which
 * never shows more than a third of it: the first four and last four
 * characters around "****" for secrets of 24 bytes or more
 * ("sk-a****xyz9"), "****" and the last four for secrets of 12 to 23
 * bytes ("****xyz9"), "****" alone for shorter ones.  Always NUL-terminates
 * when size is nonzero.  Returns buf.  Thread-safe.
 */
KW_EXPORT char *kw_mask(const char *secret, size_t len, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* KEYWAY_KEYWAY_H */
