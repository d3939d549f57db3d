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

#define KWI_UNUSED_RESULT __attribute__((warn_unused_result))

struct kw_ctx;
struct kwi_query_in;

/* Five answers a backend gives, as the chain sees them. */
enum kwi_answer {
	KWI_FOUND = 0,
	KWI_NOTFOUND = 1,
	KWI_DENIED = 2,
	KWI_UNAVAIL = 3,
	KWI_ERROR = 4,
	KWI_NANSWERS = 5
};

enum kwi_answer kwi_answer_of(kw_status st);
/* Is st a status this library has a name for? */
bool kwi_status_known(kw_status st);
const char *kwi_answer_str(enum kwi_answer a);

/* ---- errors and diagnostics (error.c) ---- */

/* Set the calling thread's kw_last_error() and return st. */
kw_status kwi_error(kw_status st, const char *fmt, ...) KW_PRINTF(2, 3);
kw_status kwi_verror(kw_status st, const char *fmt, va_list ap);

/*
 * Problems found while loading a configuration.  kw_open() keeps the
 * first; kw_check() reports all of them.
 */
struct kwi_diag {
	kw_report_fn *report; /* NULL: keep only the first */
	void *arg;
	kw_status first;      /* KW_OK while nothing went wrong */
	unsigned count;
	kw_problem_fn *problem; /* also told each problem in parts, or NULL */
};

/* Record "file:line: message" (line 0: "file: message"). */
void kwi_diag(struct kwi_diag *d, kw_status st, const char *file, int line,
	      const char *fmt, ...) KW_PRINTF(5, 6);
void kwi_vdiag(struct kwi_diag *d, kw_status st, const char *file, int line,
	       const char *fmt, va_list ap);

/* ---- guarded memory (secmem.c) ---- */

/* Locked, non-dumpable, zeroed memory; NULL when out of memory. */
void *kwi_secure_alloc(size_t len);
/* Wipe and release; NULL is a no-op.  len is the size asked for. */
void kwi_secure_free(void *p, size_t len);
void kwi_wipe(void *p, size_t len);
/* Hold every lock of guarded memory, around fork(). */
void kwi_secmem_lock_all(void);
void kwi_secmem_unlock_all(void);

/* ---- files (fsutil.c) ---- */

/*
 * Is this file or directory safe to trust: owned by root or the caller, and
 * not writable by group or others (a directory that is sticky and owned by
 * root, such as /tmp, is safe)?  On refusal writes why into why.
 */
bool kwi_stat_trusted(const struct stat *st, bool is_dir, char *why,
		      size_t whylen);
/*
 * Check every directory on the way to path and path itself, following
 * symbolic links and checking where they lead too; a link itself must be
 * owned by root or the caller, since its owner can replace it.
 */
kw_status kwi_path_trusted(const char *path, char *why, size_t whylen);
/* Open a secret-bearing file as module.h's open_private describes. */
kw_status kwi_open_private(const char *path, int *fd, char *why,
			   size_t whylen);

/* ---- modules (loader.c) ---- */

struct kwi_module {
	struct kwi_module *next;
	char *name;                    /* "env" */
	char *path;                    /* file it was loaded from */
	void *handle;                  /* dlopen() handle */
	const struct kw_module *desc;  /* descriptor */
	/*
	 * The descriptor again, copied as far as the module's `size` says
	 * and zero beyond: an operation that a shorter descriptor, from a
	 * module built against an older module.h, does not hold is NULL.
	 * Call operations through it (m->ops.lookup); desc keeps the
	 * module's own `size` for fields whose absence means something
	 * else than zero (usage_filter_size).
	 */
	struct kw_module ops;
};

/*
 * Load module `spec` (a name, looked up in each directory of
 * $KEYWAY_MODULE_DIR and then the built-in one; or an absolute path)
 * unless it is already in *list, and check its descriptor.  *out is set
 * to the module, which *list owns (NULL on failure).  Returns KW_OK;
 * KW_ERR_CONFIG for a name that is not one, KW_ERR_PERM for a file or
 * directory that is not trusted, KW_ERR_NOMEM, or KW_ERR_MODULE, with
 * the reason written into why (whylen bytes).
 */
kw_status kwi_module_load(struct kwi_module **list, const char *spec,
			  struct kwi_module **out, char *why, size_t whylen);
/* Unload and free every module of list.  NULL is a no-op. */
void kwi_module_unload_all(struct kwi_module *list);

/* ---- master keys and sealing (crypto.c) ---- */

enum kwi_key_source { KWI_KEY_ENV = 1, KWI_KEY_FILE, KWI_KEY_PASSPHRASE };
enum kwi_kdf { KWI_KDF_ARGON2ID = 1, KWI_KDF_PBKDF2 };

/* One of keyway.master_key / keyway.old_master_keys.  Kept in guarded
 * memory: it holds the key, or the passphrase it is derived from. */
struct kwi_master {
	enum kwi_key_source source;
	enum kwi_kdf kdf;
	bool var_default;           /* var not given: also try the legacy name */
	char var[128];
	char path[1024];
	char what[64];              /* "keyway.master_key" for messages */
	const char *file;
	int line;
	unsigned char key[32];      /* env and file sources */
	char *pass;                 /* passphrase source (guarded) */
	size_t pass_len;
};

/* Parse group g into m and read its key material. */
kw_status kwi_master_parse(struct kwi_master *m, const config_setting_t *g,
			   const char *file, const char *what,
			   const char *config_dir, struct kwi_diag *d);
void kwi_master_free(struct kwi_master *m);

struct kw_ctx;
/* The context's master keys bound to a store's salt (cached per salt; owned
 * by the context). */
kw_status kwi_keyring_get(struct kw_ctx *ctx,
			  const unsigned char salt[KW_SALT_SIZE],
			  struct kw_keyring **out);
void kwi_keyrings_free(struct kw_ctx *ctx);
/* Can kr seal and open here (AES-NI, or OpenSSL's libcrypto loaded)?
 * Else why says what is missing. */
kw_status kwi_keyring_ready(const struct kw_keyring *kr, char *why,
			    size_t whylen);
const char *kwi_keyring_id(const struct kw_keyring *kr);
bool kwi_keyring_knows(const struct kw_keyring *kr, const char *id);
kw_status kwi_seal(const struct kw_keyring *kr, const kw_seal_aad *aad,
		   const char *plain, size_t len, unsigned char **out,
		   size_t *outlen);
kw_status kwi_unseal(const struct kw_keyring *kr, const kw_seal_aad *aad,
		     const unsigned char *sealed, size_t len, char *plain,
		     char *why, size_t whylen);
kw_status kwi_sealed_key_id(const unsigned char *sealed, size_t len,
			    char id[KW_KEY_ID_SIZE]);

/* ---- providers (providers.c) ---- */

#include "providers.h"

/* ---- names (names.c) ---- */

#include "names.h"

/* ---- configuration (config*.c) and the context (context.c) ---- */

#include "conf.h"
#include "context.h"

/* ---- the audit trail (audit.c) ---- */

struct kwi_audit;
kw_status kwi_audit_parse(struct kw_ctx *ctx, const config_setting_t *g,
			  const char *file, struct kwi_diag *d);
/* Open the sink; after the master keys are loaded. */
kw_status kwi_audit_open(struct kw_ctx *ctx, struct kwi_diag *d);
void kwi_audit_free(struct kw_ctx *ctx);
/* The file of a "jsonl" sink, else NULL. */
const char *kwi_audit_path(const struct kw_ctx *ctx);
/* Record a resolve (s: the secret handed out, or NULL).  A failure to
 * write is KW_ERR_IO unless keyway.audit.on_failure = "allow". */
kw_status kwi_audit_resolve(struct kw_ctx *ctx, const struct kwi_query_in *in,
			    kw_status result, const kw_secret *s);
kw_status kwi_audit_change(struct kw_ctx *ctx, const kw_actor *actor,
			   const char *op, const char *backend,
			   const kw_store_key *k, kw_status result);

/* ---- requests (request.c) and chains (control.c, trace.c, chain.c) ---- */

#include "request.h"
#include "chain.h"

/* ---- the host side of the module ABI (host.c) ---- */

#include "host.h"

/* ---- quotas (quota.c) and the clock (clock.c) ---- */

#include "quota.h"
#include "clock.h"

#ifdef KW_TEST_SEAMS
/* Seal and open with OpenSSL even where libsodium's AES-NI code runs;
 * returns how many seals and opens took OpenSSL's way so far. */
unsigned long kwi_test_force_openssl(bool on);
/* Load this file instead of libcrypto (before OpenSSL is first needed). */
void kwi_test_libcrypto(const char *soname);
/* PBKDF2-HMAC-SHA256 on libsodium, with any parameters. */
bool kwi_test_pbkdf2_sha256(const char *pass, size_t pass_len,
			    const unsigned char *salt, size_t salt_len,
			    unsigned long iterations, unsigned char *out,
			    size_t out_len);
#endif

/* ---- secrets handed out (secret.c) ---- */

#include "secret.h"

/* ---- usage counts (usage.c) ---- */

struct kwi_usage;
/* Start the thread that writes usage counts: before anything secret is
 * read (see usage.c). */
kw_status kwi_usage_start(struct kw_ctx *ctx);
/* Once the backends are open: stop it when none records uses. */
void kwi_usage_settle(struct kw_ctx *ctx);
/* Write what is pending and stop; later uses are dropped. */
void kwi_usage_stop(struct kw_ctx *ctx);
/* In a child of the process that started it: let go of it without a
 * lock, a write or a wait (what is pending is the parent's). */
void kwi_usage_abandon(struct kw_ctx *ctx);
struct kwi_usage *kwi_usage_ref(struct kw_ctx *ctx);
void kwi_usage_release(struct kwi_usage *s);
/* Around fork(): wait for the counts being written to a module, and
 * start no write until kwi_usage_fork_done() (parent and child). */
void kwi_usage_fork_prepare(void);
void kwi_usage_fork_done(void);
#ifdef KW_TEST_SEAMS
/* Write counts every ms milliseconds in contexts opened after (0: as
 * usual). */
void kwi_test_usage_flush_ms(int ms);
#endif
void kwi_usage_note(struct kwi_usage *s, struct kw_instance *store,
		    kw_scope scope, const char *owner, const char *provider,
		    int64_t when);

#endif /* KEYWAY_INTERNAL_H */
