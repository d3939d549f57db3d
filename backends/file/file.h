/*
 * file.h - what the parts of the file module share: the descriptor and
 * operations (file.c), the snapshot a process keeps of the file
 * (snap.c), the locked, crash-safe writes (write.c), and the bytes of
 * the format (format.c, docs/file-format.md).
 *
 * Not installed; nothing here is exported.
 */
#ifndef KW_FILE_H
#define KW_FILE_H

#include <stdbool.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <keyway/module.h>

#define FILE_MAGIC "\x89KEYWAY\n"
#define FILE_MAGIC_LEN 8
#define FILE_VERSION 1
#define FILE_HEADER_LEN 64     /* magic to generation */
#define FILE_ID_LEN 16
#define FILE_SEAL_AT FILE_HEADER_LEN
#define FILE_MIN_LEN (FILE_HEADER_LEN + KW_SEAL_OVERHEAD)
/* The sealed envelope's associated data is the header in hex. */
#define FILE_AAD_ID_LEN (2 * FILE_HEADER_LEN)
#define FILE_DESC_MAX 320      /* "org key of \"OWNER\" for PROVIDER" */

/* Offsets of the header's fields (docs/file-format.md). */
#define FILE_OFF_VERSION 8
#define FILE_OFF_KDF 10
#define FILE_OFF_KDF_PARAMS 12
#define FILE_OFF_SALT 24
#define FILE_OFF_FILE_ID 40
#define FILE_OFF_GENERATION 56

/* One record.  Strings and the sealed value point into the snapshot's
 * plaintext, or into memory of the write that made the record. */
struct file_rec {
	kw_scope scope;
	bool active;
	const char *owner;        /* NULL for a system key */
	const char *provider;
	const char *name;         /* "" if none */
	int64_t created, rotated;
	uint64_t usage_count;
	int64_t last_used;
	const unsigned char *sealed;
	size_t sealed_len;
	/* Owned by the record when the write made it (else NULL). */
	char *own_owner, *own_provider, *own_name;
	unsigned char *own_sealed;
};

/* The header's fields. */
struct file_header {
	uint32_t version;
	uint32_t kdf;
	uint32_t kdf_params[3];
	unsigned char salt[KW_SALT_SIZE];
	unsigned char file_id[FILE_ID_LEN];
	uint64_t generation;
};

/* A file as read: its header, its records sorted by (scope, owner,
 * provider), and what stat() said of it. */
struct file_snap {
	struct file_header h;
	/* The header and the envelope's version, key id and nonce: a new
	 * nonce at every write tells a rewrite from a touch. */
	unsigned char head[FILE_HEADER_LEN + 21];
	char file_id_hex[2 * FILE_ID_LEN + 1];
	char key_id[KW_KEY_ID_SIZE];  /* master key of the envelope */
	struct file_rec *recs;
	size_t n, cap;
	char *plain;                  /* the envelope's plaintext */
	size_t plain_len;
	char *strs;                   /* the records' strings, NUL-ended */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	unsigned refs;                /* under the state's lock */
	bool touched;                 /* read_snap(): the file we had, only
					 its stat() changed; nothing parsed */
};

/* One backend on a file. */
struct file_state {
	const kw_host *host;
	kw_instance *inst;
	const char *path;
	char *lock_path;
	char *dir;
	kw_scope scope;
	const char *scope_word;
	kw_keyring *kr;
	unsigned char salt[KW_SALT_SIZE];
	unsigned char file_id[FILE_ID_LEN];
	pthread_mutex_t lock;      /* guards snap and its refs */
	struct file_snap *snap;
	/* An older copy was put in the file's place (snap.c): generation
	 * rolled_to, after rolled_from.  Under lock. */
	bool rolled_back;
	uint64_t rolled_to, rolled_from;
	/* Use counts not yet written (uses.c). */
	pthread_mutex_t uses_lock; /* guards the three below */
	struct file_use *uses;
	size_t nuses, uses_cap;
	int64_t uses_written;      /* CLOCK_MONOTONIC seconds */
};

/* A copy of a file's records that a write changes. */
struct file_edit {
	struct file_rec *recs;
	size_t n, cap;
	struct file_header h;
};

/* What a refusal says: a status and one line without the file's name. */
struct file_err {
	kw_status rc;
	char msg[400];
};

/* ---- format.c ---- */

/*
 * Parse a file's bytes into snap: the header checked, the envelope opened
 * with kr, the records read.  KW_OK, or a status with e->msg (one line
 * that the caller prefixes with the path).
 */
kw_status file_parse(const kw_host *host, const kw_keyring *kr,
		     const unsigned char *buf, size_t len,
		     struct file_snap *snap, struct file_err *e);
/* Parse only the header of buf (len bytes, at least FILE_HEADER_LEN). */
kw_status file_parse_header(const unsigned char *buf, size_t len,
			    struct file_header *h, struct file_err *e);
/*
 * The bytes of a file holding snap's records under header h, sealed with
 * kr: malloc'd into *out (no secret: the records' values are sealed and
 * the envelope too).  KW_OK, KW_ERR_NOMEM or KW_ERR_CRYPTO.
 */
kw_status file_build(const kw_host *host, const kw_keyring *kr,
		     const struct file_header *h, const struct file_rec *recs,
		     size_t n, unsigned char **out, size_t *outlen);
/* Release what snap holds (not snap). */
void file_snap_clear(const kw_host *host, struct file_snap *snap);
/* Order of records: scope, owner ("" for none), provider. */
int file_rec_cmp(kw_scope scope, const char *owner, const char *provider,
		 const struct file_rec *r);
/* Where a key is in recs (n records in order), or where it would go;
 * *found says which. */
size_t file_find(const struct file_rec *recs, size_t n, kw_scope scope,
		 const char *owner, const char *provider, bool *found);
/* Hex of len bytes into out (2 * len + 1 bytes). */
void file_hex(const unsigned char *in, size_t len, char *out);

/* ---- snap.c ---- */

/* Release snap and what it holds (NULL: nothing). */
void file_snap_free(const kw_host *host, struct file_snap *snap);
/* Drop a reference taken by file_current(). */
void file_snap_release(struct file_state *st, struct file_snap *snap);
/*
 * Read the file on fd into a new snapshot *out, unless it is the one
 * `old` already holds (only its stat() changed: (*out)->touched).
 * KW_OK, or a status and e->msg naming the file.
 */
kw_status file_read_snap(struct file_state *st, int fd,
			 const struct file_snap *old, struct file_snap **out,
			 struct file_err *e);
/*
 * The file as it is now, with a reference the caller drops with
 * file_snap_release().  `verify` (a writer, under the lock) reads the
 * header again instead of trusting stat().
 */
kw_status file_current(struct file_state *st, bool verify,
		       struct file_snap **out, struct file_err *e);

/* ---- write.c ---- */

/* How long a write waits for the lock, in milliseconds: a put or rotate
 * a while; the use counts' flush, run by a thread the application's
 * fork() waits for, hardly at all. */
#define FILE_WAIT_MANAGE 10000
#define FILE_WAIT_USES 200

/* The change a write makes to ed; says what it did through r. */
typedef kw_status file_change_fn(struct file_state *st, struct file_edit *ed,
				 void *arg, kw_reply *r);
/*
 * Change the file under the write lock, waited for up to wait_ms: read
 * it as it is now, apply `change` to a copy of its records, and replace
 * the file with them, one generation on, sealed under the current master
 * key.  On failure r says why and the file is unchanged.
 */
kw_status file_write(struct file_state *st, long wait_ms,
		     file_change_fn *change, void *arg, kw_reply *r);
/*
 * Make a new, empty file under the write lock (*made), unless another
 * process made it first.  Errors go through host->error().
 */
kw_status file_create(struct file_state *st, bool *made);

/* ---- uses.c ---- */

/* The module's used() and used_batch(): counts added up, written at most
 * once a minute. */
kw_status file_used(void *state, const kw_store_key *k, uint64_t count,
		    int64_t when, kw_reply *r);
kw_status file_used_batch(void *state, const kw_store_use *uses, size_t n,
			  kw_reply *r);
/* Before anything else of st is set up. */
void file_uses_init(struct file_state *st);
/* As the backend closes, while its snapshot and keyring are there: the
 * counts still pending are written. */
void file_uses_close(struct file_state *st);

#endif /* KW_FILE_H */
