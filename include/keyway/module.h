/*
 * module.h - the interface between libkeyway and its modules.
 *
 * A module is one shared object, kw_<name>.so, that exports exactly one
 * symbol: kw_module_entry, a function returning its descriptor (struct
 * kw_module).  Build it out of tree with
 * `cc -o kw_NAME.so NAME.c $(pkg-config --cflags --libs keyway-module)`
 * (libtool: -module -avoid-version -shared); a module does
 * not link against libkeyway: everything it needs from the host comes
 * through the struct kw_host table handed to its open() function.
 *
 *     static kw_status my_lookup(void *state, const kw_query *q);
 *     static const kw_setting_spec my_settings[] = {
 *         { "path", KW_SETTING_STRING, KW_SETTING_REQUIRED },
 *         { NULL, 0, 0 }
 *     };
 *     static const struct kw_module my_module = {
 *         KW_MODULE_HEADER,
 *         .name = "my",
 *         .description = "what it is",
 *         .caps = KW_CAP_LOOKUP,
 *         .settings = my_settings,
 *         .open = my_open,
 *         .close = my_close,
 *         .check = my_check,
 *         .lookup = my_lookup,
 *     };
 *     KW_MODULE_EXPORT(my_module)
 *
 * plugins/skeleton/ is a complete, annotated example.
 *
 * Versioning.  Both tables start with the ABI major version and their own
 * size as compiled.  The host refuses a module whose major version differs
 * from its own, with a message naming both.  Within one major version
 * tables only grow at the end: the host treats operations past a module's
 * `size` as absent, and a module must check KW_HOST_HAS() before calling a
 * host service newer than the oldest host it supports.
 *
 * Threads.  open() and close() are called once per backend from one
 * thread.  lookup() and check() may be called concurrently from any number
 * of threads on the same state: a module must be thread-safe.  Every host
 * service may be called from any thread, except the setting accessors,
 * error() and open_private(), which belong to open().
 *
 * Files and descriptors.  Open everything close-on-exec: applications run
 * other programs (`keyway exec`) while a context is open.
 *
 * A module does not link against libkeyway: the kw_* functions of keyway.h
 * are not available to it, only the types and constants.  So this header
 * includes <keyway/types.h>, which holds what keyway.h and module.h share,
 * and not keyway.h: a call to kw_resolve() in a module fails to compile
 * rather than to load.
 */
#ifndef KEYWAY_MODULE_H
#define KEYWAY_MODULE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <keyway/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KW_MODULE_ABI 1

/* The entry point every module exports. */
#define KW_MODULE_ENTRY_SYMBOL "kw_module_entry"

/* What a module can do. */
#define KW_CAP_LOOKUP 0x01u /* answers lookup() */
#define KW_CAP_STORE  0x02u /* can store keys */
#define KW_CAP_LIST   0x04u /* can list keys */
#define KW_CAP_LEDGER 0x08u /* counts quotas */
#define KW_CAP_SCOPED 0x10u /* takes `scope` = user | org | system */

/* Types of module settings, checked by the host before open(). */
typedef enum kw_setting_type {
	KW_SETTING_STRING = 1,
	KW_SETTING_INT = 2,    /* 64-bit integer */
	KW_SETTING_BOOL = 3,
	KW_SETTING_STRMAP = 4, /* group of name = "string" pairs */
	KW_SETTING_PATH = 5,   /* string; relative paths are made absolute
				  against the config file's directory */
	KW_SETTING_INT_OR_STRING = 6 /* an integer or a string, as in
				  kv_version = 2 or "auto": read it with
				  setting_int() and, when that answers
				  KW_ERR_NOTFOUND, setting_string().
				  Available since the vault module; an
				  older host refuses it at load */
} kw_setting_type;

#define KW_SETTING_REQUIRED 0x01u

/* One setting a module accepts.  A table ends with a NULL name. */
typedef struct kw_setting_spec {
	const char *name;
	kw_setting_type type;
	unsigned flags;
} kw_setting_spec;

/* Opaque handles owned by the host. */
typedef struct kw_instance kw_instance; /* one backend of keyway.conf */
typedef struct kw_reply kw_reply;       /* the answer being built */
typedef struct kw_keyring kw_keyring;   /* master keys bound to a store */

/* ---- sealing ---- */

#define KW_SALT_SIZE 16
#define KW_KEY_ID_SIZE 17     /* 16 hex digits and a NUL */
#define KW_SEAL_OVERHEAD 37   /* bytes a sealed value adds to its plaintext */

/*
 * What a sealed value is bound to.  A value sealed for one record does not
 * open for another: copying a ciphertext onto another row fails.
 */
typedef struct kw_seal_aad {
	const char *store_id; /* stable id of the store (not its path) */
	kw_scope scope;
	const char *owner;    /* NULL for system keys */
	const char *provider;
} kw_seal_aad;

/* ---- storing ---- */

/* One key of a store. */
typedef struct kw_store_key {
	kw_scope scope;
	const char *owner;    /* NULL for system keys */
	const char *provider;
} kw_store_key;

typedef struct kw_store_put {
	kw_store_key key;
	const char *value;    /* plaintext, already checked; seal it */
	size_t len;
	const char *name;     /* label, or NULL (keep the old one on rotate) */
	kw_put_mode mode;     /* KW_PUT_CREATE or KW_PUT_ROTATE */
} kw_store_put;

/* A batch of use counts for used_batch(). */
typedef struct kw_store_use {
	kw_store_key key;
	uint64_t count;       /* uses since the last report */
	int64_t when;         /* the last of them, Unix seconds */
} kw_store_use;

/* What list() reports of one key. */
typedef struct kw_store_record {
	kw_scope scope;
	const char *owner;    /* NULL for system keys */
	const char *provider;
	const char *name;     /* "" if none */
	bool active;
	const char *masked;   /* from host->mask() of the opened value */
	uint64_t usage_count;
	int64_t last_used;
	int64_t created;
	int64_t rotated;
	const char *key_id;
} kw_store_record;

/* Called by list() once per record; a status other than KW_OK stops it. */
typedef kw_status kw_store_list_fn(void *arg, const kw_store_record *rec);

/* ---- counting (ledgers) ---- */

/* What an instance of a module is for. */
typedef enum kw_instance_role {
	KW_INSTANCE_BACKEND = 1, /* a backend of keyway.conf */
	KW_INSTANCE_LEDGER = 2   /* keyway.ledger */
} kw_instance_role;

/*
 * One quota counter in one window.  `counter` names the quota and whom it
 * counts ("server_env/0/user:alice", or with a quota per user and provider
 * "server_env/0/user+provider:alice/anthropic"); a counter lives for one
 * window.  The host composes it from everything the quota counts by: a
 * ledger keys its count on the string as it is and need not parse it.
 */
typedef struct kw_quota_slot {
	const char *counter;
	int64_t window;       /* start of the window, seconds since the epoch */
	int64_t expires;      /* end of the window: the count may go then */
	uint64_t limit;
} kw_quota_slot;

/*
 * A charge: admit one request against every slot, all or none, and log
 * the usage row, in one atomic step.
 */
typedef struct kw_charge {
	const kw_quota_slot *slots;
	size_t nslots;
	const kw_usage_row *usage;
	/* Set by charge(): */
	size_t full;          /* on KW_ERR_DENIED: the slot that is used up */
	uint64_t count;       /* ... and its count */
	int64_t usage_id;     /* on KW_OK: the usage row, for refund() */
} kw_charge;


/* A lookup.  Fields may be added at the end; check `size`. */
typedef struct kw_query {
	uint32_t size;        /* sizeof(kw_query) as the host compiled it */
	kw_scope scope;       /* the backend's scope */
	const char *owner;    /* user or org the scope names; NULL for system
				 and unscoped backends */
	const char *provider; /* never NULL */
	const char *user;     /* may be NULL */
	const char *org;      /* may be NULL */
	const char *chain;    /* chain being walked */
	kw_reply *reply;      /* pass to the host's reply_* services */
	uint32_t flags;       /* KW_QUERY_* */
} kw_query;

/* True when the host's kw_query has `field` (a newer one). */
#define KW_QUERY_HAS(q, field) \
	((q)->size >= offsetof(kw_query, field) + sizeof((q)->field))

/*
 * The host calls the module's walk_end() on this thread once the walk this
 * lookup belongs to is over: the module may keep what it needs for the
 * walk's other lookups (a read transaction, a connection) until then.
 */
#define KW_QUERY_WALK 0x01u
/*
 * A dry run for `keyway explain`: the reply's detail is shown to a person.
 * Without it, the detail of a found key is never read and need not be
 * made; the detail of any other answer still ends up in error messages.
 */
#define KW_QUERY_EXPLAIN 0x02u

#define KW_LOG_ERR 3
#define KW_LOG_WARNING 4
#define KW_LOG_INFO 6
#define KW_LOG_DEBUG 7

/*
 * Services the host offers to modules.  The setting accessors, error(),
 * open_private(), keyring_open() and open_flags() may be called in open()
 * only; the rest at any time (docs/plugin-guide.md has the table).
 * Strings returned by the setting
 * accessors stay valid until close().  A KW_SETTING_PATH is read with
 * setting_string() and is always absolute: a relative path in keyway.conf
 * is taken against the directory of the file it is written in.
 */
typedef struct kw_host {
	uint32_t abi;  /* KW_MODULE_ABI of the host */
	uint32_t size; /* sizeof(struct kw_host) as the host compiled it */

	/* The backend's name in keyway.conf, e.g. "server_env". */
	const char *(*instance_name)(const kw_instance *inst);

	/*
	 * Typed settings, already checked against the module's settings
	 * table.  KW_ERR_NOTFOUND when the setting is absent.
	 */
	kw_status (*setting_string)(const kw_instance *inst, const char *name,
				    const char **value);
	kw_status (*setting_int)(const kw_instance *inst, const char *name,
				 int64_t *value);
	kw_status (*setting_bool)(const kw_instance *inst, const char *name,
				  bool *value);
	/* Pair `index` (0-based) of a KW_SETTING_STRMAP; KW_ERR_NOTFOUND past
	 * the end. */
	kw_status (*setting_map)(const kw_instance *inst, const char *name,
				 size_t index, const char **key,
				 const char **value);

	/*
	 * Say why open() failed.  The host prints it as
	 * "file:line: backend "NAME": MESSAGE", with the line of `setting`
	 * (NULL: of the backend).  One line, no secret.
	 */
	void (*error)(kw_instance *inst, const char *setting, const char *fmt,
		      ...) KW_PRINTF(3, 4);

	/*
	 * Log a line at one of the KW_LOG_* levels.  Never log a secret.  It
	 * goes to syslog (facility authpriv) and, when stderr is a terminal or
	 * keyway.log says so (keyway.conf(5)), to stderr, as one line:
	 * "keyway: backend "NAME": MESSAGE", control characters made spaces.
	 */
	void (*log)(const kw_instance *inst, int level, const char *fmt, ...)
		KW_PRINTF(3, 4);

	/* Hand the secret back: copies len bytes into guarded memory.
	 * Secrets larger than 1 MiB are refused with KW_ERR_INVAL. */
	kw_status (*reply_secret)(kw_reply *r, const char *value, size_t len);
	/* Or get a guarded buffer of len + 1 bytes to fill in place (e.g. to
	 * decrypt into); the host NUL-terminates it after lookup returns. */
	kw_status (*reply_buffer)(kw_reply *r, size_t len, char **buf);
	/* Explain the answer in words, for `keyway explain` and error
	 * messages ("ANTHROPIC_API_KEY is not set").  Never a secret.  A
	 * second call replaces the first.  When lookup() returns anything but
	 * KW_OK, a secret it replied is wiped and dropped. */
	void (*reply_detail)(kw_reply *r, const char *fmt, ...) KW_PRINTF(2, 3);

	/* Locked, non-dumpable memory for the module's own secrets; freed
	 * memory is wiped.  secure_free(NULL, 0) is a no-op. */
	void *(*secure_alloc)(size_t len);
	void (*secure_free)(void *p, size_t len);
	/* Wipe memory in a way the compiler will not elide. */
	void (*wipe)(void *p, size_t len);

	/* Seconds since the epoch, UTC. */
	int64_t (*now)(void);

	/*
	 * Open a file that holds secrets, for reading, as OpenSSH opens a
	 * private key: no symlink as the last component, a regular file,
	 * owned by root or the caller, and neither readable nor writable by
	 * group or others.  A FIFO or a device is refused without waiting
	 * for it to open.  On refusal it calls error() on `setting` with a
	 * message that says what is wrong and how to fix it, and returns
	 * KW_ERR_PERM (KW_ERR_IO for other failures).  A file that does not
	 * exist is KW_ERR_NOTFOUND with nothing reported: the module decides
	 * whether that is an error, and says so with error() if it is.  The
	 * caller closes *fd.
	 */
	kw_status (*open_private)(kw_instance *inst, const char *setting,
				  const char *path, int *fd);

	/* The backend's scope (KW_SCOPE_NONE for an unscoped module). */
	kw_scope (*instance_scope)(const kw_instance *inst);

	/* Fill buf with len random bytes from the system's CSPRNG. */
	void (*random)(void *buf, size_t len);
	/* The masked form of a value ("sk-a****xyz9") into buf (size bytes,
	 * KW_MASK_SIZE is enough). */
	void (*mask)(const char *value, size_t len, char *buf, size_t size);

	/*
	 * Sealing, for modules that store keys.  keyring_open() binds the
	 * configured master keys to a store whose random salt (kept in the
	 * store, made with random() when the store is created) is `salt`: a
	 * master key derived from a passphrase depends on it.  Call it in
	 * open(); it fails with a message (KW_ERR_CONFIG) when
	 * keyway.master_key is not set.  The keyring is read-only and may be
	 * used from any thread until keyring_close().
	 */
	kw_status (*keyring_open)(kw_instance *inst,
				  const unsigned char salt[KW_SALT_SIZE],
				  kw_keyring **kr);
	void (*keyring_close)(kw_keyring *kr);
	/* Id of the current master key, which seal() uses. */
	const char *(*keyring_id)(const kw_keyring *kr);
	/* Is `id` the current master key or one of keyway.old_master_keys? */
	bool (*keyring_knows)(const kw_keyring *kr, const char *id);
	/*
	 * Seal len bytes with AES-256-GCM under the current master key, bound
	 * to aad.  *out is a malloc'd blob of len + KW_SEAL_OVERHEAD bytes
	 * (free() it); it holds no secret.
	 */
	kw_status (*seal)(const kw_keyring *kr, const kw_seal_aad *aad,
			  const char *plain, size_t len, unsigned char **out,
			  size_t *outlen);
	/*
	 * Open a sealed blob into plain, which has room for
	 * sealed_len - KW_SEAL_OVERHEAD bytes (use reply_buffer() or
	 * secure_alloc() memory).  Any failure (tampering, another record's
	 * value, a master key that is not configured) is KW_ERR_CRYPTO with
	 * the reason in why; plain is wiped then.
	 */
	kw_status (*unseal)(const kw_keyring *kr, const kw_seal_aad *aad,
			    const unsigned char *sealed, size_t sealed_len,
			    char *plain, char *why, size_t whylen);
	/* The id of the master key a blob was sealed under. */
	kw_status (*sealed_key_id)(const unsigned char *sealed,
				   size_t sealed_len,
				   char id[KW_KEY_ID_SIZE]);

	/* What this instance is: a backend, or the ledger. */
	kw_instance_role (*instance_role)(const kw_instance *inst);

	/*
	 * How this instance is being opened: KW_OPEN_* flags, 0 for an
	 * ordinary open.  Call it in open().  Newer than the first hosts of
	 * this ABI: test KW_HOST_HAS(host, open_flags) first; on a host
	 * without it every open is an ordinary one.
	 */
	uint32_t (*open_flags)(const kw_instance *inst);

	/*
	 * How the current master key of kr (the one seal() uses) is made
	 * from what keyway.master_key names, for a store that records it
	 * beside its salt: KW_KDF_NONE (a 32-byte key used as it is),
	 * KW_KDF_ARGON2ID (params: passes, memory in KiB, lanes) or
	 * KW_KDF_PBKDF2_SHA256 (params[0]: iterations; the rest 0), run over
	 * the keyring's salt.  Since the first host with the file module:
	 * test KW_HOST_HAS(host, keyring_kdf) first.
	 */
	uint32_t (*keyring_kdf)(const kw_keyring *kr, uint32_t params[3]);

	/*
	 * open_private() for any time and any thread: the same checks, but
	 * what is wrong goes into why (whylen bytes: one line that names the
	 * file and the fix, no secret) instead of error(), for a module that
	 * opens a private file again after open() (a file replaced by a
	 * newer one).  KW_ERR_NOTFOUND (why says so too), KW_ERR_PERM or
	 * KW_ERR_IO.  Since the first host with the file module: test
	 * KW_HOST_HAS(host, reopen_private) first.
	 */
	kw_status (*reopen_private)(const char *path, int *fd, char *why,
				    size_t whylen);

	/*
	 * Check a file the module opened itself, on its descriptor, as
	 * OpenSSH's sshkey_perm_ok() checks a private key and with
	 * open_private()'s rules: a regular file, owned by root or the
	 * caller, no permission for group or others.  For a file opened at
	 * lookup time: checking the descriptor checks the file that is read,
	 * not a path that may have changed since.  On refusal why (whylen
	 * bytes) gets one line that names the file as `name` (its path; NULL:
	 * "the file"), says what is wrong and how to fix it, no secret.
	 * KW_OK, KW_ERR_PERM, KW_ERR_IO (fstat() failed) or KW_ERR_INVAL (fd
	 * < 0).  Any time, any thread.  Newer than the first hosts of this
	 * ABI: test KW_HOST_HAS(host, check_private) first.
	 */
	kw_status (*check_private)(int fd, const char *name, char *why,
				   size_t whylen);
} kw_host;

/* What keyring_kdf() answers. */
#define KW_KDF_NONE 0
#define KW_KDF_ARGON2ID 1
#define KW_KDF_PBKDF2_SHA256 2

/*
 * The open is for `keyway check` (kw_check()), which looks and touches
 * nothing: create no file, directory or remote object that is missing, but
 * report it through error() on the setting that names it, with how to
 * make it ("create it with keyway init"); refuse what is there as an
 * ordinary open would.  check() is then called as usual.  A module that
 * ignores the flag makes a check create what its open creates.
 */
#define KW_OPEN_CHECK 0x01u

/* True when the host offers `member` (a newer service). */
#define KW_HOST_HAS(host, member)                                             \
	((host)->size >= offsetof(kw_host, member) + sizeof((host)->member) && \
	 (host)->member != NULL)

/*
 * A module's descriptor.  Operations a module does not offer are NULL.
 */
struct kw_module {
	uint32_t abi;  /* KW_MODULE_ABI the module was built for */
	uint32_t size; /* sizeof(struct kw_module) as the module compiled it */
	const char *name;        /* "env", matching kw_env.so: 1 to 64 of
				  * a-z, 0-9, _ and -, or it is not loaded */
	const char *description; /* one line */
	uint32_t caps;           /* KW_CAP_* */
	/* Settings beyond `module`, `scope` and `quota`, which the host
	 * handles; NULL-name terminated.  Any other setting is refused. */
	const kw_setting_spec *settings;

	/*
	 * Open one backend.  Read settings through host, set *state, return
	 * KW_OK; or call host->error() and return a failure status.
	 */
	kw_status (*open)(const kw_host *host, kw_instance *inst,
			  void **state);
	/* Release everything open() made.  Called only after a successful
	 * open(). */
	void (*close)(void *state);
	/*
	 * Health check for `keyway check`: KW_OK, or a failure status with
	 * the reason given through host->reply_detail(r, ...).
	 */
	kw_status (*check)(void *state, kw_reply *r);
	/*
	 * Look up q->provider for q->owner.  Return KW_OK after reply_secret()
	 * or reply_buffer(); KW_ERR_NOTFOUND, KW_ERR_DENIED, KW_ERR_UNAVAIL,
	 * or an error status otherwise, with a reply_detail() saying why.
	 * The host takes as an error (KW_ERR_BACKEND, naming the module) a
	 * found key that is empty or holds a NUL byte, and a status that
	 * keyway.h does not name.
	 */
	kw_status (*lookup)(void *state, const kw_query *q);

	/*
	 * Storing (KW_CAP_STORE).  The host has checked the actor's rights
	 * and the value's format.  Each returns KW_OK or a failure status with
	 * the reason given through host->reply_detail(r, ...):
	 * KW_ERR_EXISTS (create of an existing key), KW_ERR_NOTFOUND (no such
	 * key), KW_ERR_UNAVAIL (store busy or unreachable), ...
	 */
	kw_status (*put)(void *state, const kw_store_put *p, kw_reply *r);
	kw_status (*set_active)(void *state, const kw_store_key *k,
				bool active, kw_reply *r);
	/* Erase the record and its bytes. */
	kw_status (*remove)(void *state, const kw_store_key *k, kw_reply *r);

	/* Listing (KW_CAP_LIST): every record of `scope` (KW_SCOPE_NONE: all)
	 * and `owner` (NULL: all), in a stable order. */
	kw_status (*list)(void *state, kw_scope scope, const char *owner,
			  kw_store_list_fn *fn, void *arg, kw_reply *r);

	/* Re-seal every record under the current master key, atomically;
	 * *count gets how many were re-sealed. */
	kw_status (*rekey)(void *state, uint64_t *count, kw_reply *r);

	/*
	 * Record that a key was used `count` more times, the last at `when`
	 * (usage counts are informational: the host batches them).
	 */
	kw_status (*used)(void *state, const kw_store_key *k, uint64_t count,
			  int64_t when, kw_reply *r);

	/*
	 * Ledgers (KW_CAP_LEDGER), opened as keyway.ledger.  charge() admits
	 * the request when every slot's count is below its limit, counting it
	 * in every slot and logging c->usage, atomically with respect to every
	 * other thread and process using the same ledger: N callers admit
	 * exactly `limit` per window.  When a slot is full it changes nothing,
	 * sets c->full and c->count, logs the row with outcome "denied", and
	 * returns KW_ERR_DENIED.  With dry_run it only says whether the
	 * request would be admitted, and writes nothing.
	 */
	kw_status (*charge)(void *state, kw_charge *c, bool dry_run,
			    kw_reply *r);
	/* Undo an admitted charge: count down every slot (not below zero) and
	 * mark its usage row "refunded". */
	kw_status (*refund)(void *state, const kw_charge *c, kw_reply *r);
	/* The usage log, oldest first: the rows f matches (see
	 * usage_filter_size for the filter a module is handed).  Rows that f
	 * does not match do no harm: the host applies every condition of the
	 * caller's filter to each row again. */
	kw_status (*usage)(void *state, const kw_usage_filter *f,
			   kw_usage_fn *fn, void *arg, kw_reply *r);

	/*
	 * The walk whose lookups carried KW_QUERY_WALK is over: release on
	 * this thread what lookup() kept for it.  Called for every entry of
	 * the chain, also those the walk did not reach (a backend named twice
	 * is told twice), before kw_resolve() or kw_explain() returns.
	 */
	void (*walk_end)(void *state);
	/*
	 * used() for n keys at once, as the host flushes its counts; a module
	 * that offers it can write them in one transaction.  Returns the first
	 * failure; one that undoes the transaction may leave the rest of the
	 * batch unwritten (counts are informational).
	 */
	kw_status (*used_batch)(void *state, const kw_store_use *uses,
				size_t n, kw_reply *r);

	/*
	 * Added with kw_usage_filter's `size`.  sizeof(kw_usage_filter) as
	 * the module compiled it, for a ledger that reads conditions added to
	 * kw_usage_filter after `backend`; 0 (the default) stands for the
	 * first version with a size, which ends with `backend`.  usage() is
	 * handed a filter laid out as the module's own kw_usage_filter, whose
	 * `size` is the smaller of this and the host's.
	 *
	 * A descriptor too short to hold this field comes from a module built
	 * before kw_usage_filter began with `size`: its usage() is handed the
	 * filter in that older layout (since, until, user, org, backend; no
	 * size), so it keeps working as it was built.
	 */
	uint32_t usage_filter_size;

	/*
	 * Whether this backend may hand out the value of environment variable
	 * `name` (len bytes, not NUL-terminated) as a key: a name it maps a
	 * provider to, one it makes from a provider's name, one its dotenv
	 * file sets.  The host removes every such variable from the
	 * environment of the programs it runs (`keyway exec`), so that a key
	 * reaches them only through a chain, its quotas and its audit.
	 * Answer true when unsure.  A module that reads no environment
	 * variable leaves it NULL.  Thread-safe; called on an open state.
	 */
	bool (*reads_env)(void *state, const char *name, size_t len);
};

/*
 * The word for a stored key's scope: "user", "org" or "system"; NULL for
 * KW_SCOPE_NONE or any other value, which no stored key has.  The same
 * words as kw_scope_name(), for stores that keep the scope as text.
 * Available since 0.1.
 */
static inline const char *kw_key_scope_word(kw_scope scope)
{
	if (scope == KW_SCOPE_USER || scope == KW_SCOPE_ORG ||
	    scope == KW_SCOPE_SYSTEM)
		return kw_scope_name(scope);
	return NULL;
}

/*
 * How keyway names a stored key in messages, for modules that store keys:
 * "org key of "acme" for anthropic", "user key of "alice" for openai",
 * "system key for anthropic" (and "unscoped key for ..." for
 * KW_SCOPE_NONE or any other value), appended to buf, which holds size
 * bytes of which *len are used: the text is cut to fit, buf stays
 * NUL-terminated, *len grows.  A buffer already full (*len >= size) is
 * left as it is.
 * Inline, and without printf, so that every store names keys alike and a
 * lookup's miss costs little.  Available since 0.1.
 */
static inline void kw_key_describe(char *buf, size_t size, size_t *len,
				   kw_scope scope, const char *owner,
				   const char *provider)
{
	const char *part[5];
	size_t n = 0;

	if (size == 0 || *len >= size)
		return;
	part[n++] = kw_key_scope_word(scope) != NULL ? kw_key_scope_word(scope)
						     : "unscoped";
	if (scope == KW_SCOPE_SYSTEM || owner == NULL) {
		part[n++] = " key for ";
	} else {
		part[n++] = " key of \"";
		part[n++] = owner;
		part[n++] = "\" for ";
	}
	part[n++] = provider;
	for (size_t i = 0; i < n; i++)
		for (const char *p = part[i]; *p != '\0' && *len + 1 < size;
		     p++)
			buf[(*len)++] = *p;
	buf[*len] = '\0';
}

/* The first two fields of every descriptor; use designated initializers
 * for the rest, so that fields added later start out NULL. */
#define KW_MODULE_HEADER .abi = KW_MODULE_ABI, \
	.size = (uint32_t)sizeof(struct kw_module)

typedef const struct kw_module *kw_module_entry_fn(void);

#if defined(__GNUC__)
#define KW_MODULE_VISIBLE __attribute__((visibility("default")))
#else
#define KW_MODULE_VISIBLE
#endif

/* Define the entry point of a module whose descriptor is `desc`. */
#define KW_MODULE_EXPORT(desc)                                  \
	KW_MODULE_VISIBLE const struct kw_module *kw_module_entry(void); \
	KW_MODULE_VISIBLE const struct kw_module *kw_module_entry(void)  \
	{                                                       \
		return &(desc);                                 \
	}

#ifdef __cplusplus
}
#endif

#endif /* KEYWAY_MODULE_H */
