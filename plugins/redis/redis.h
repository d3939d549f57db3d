/*
 * redis.h - what the redis module's files share: the ledger's settings
 * (redis.c), its connections (conn.c) and its operations (ledger.c).
 *
 * Not installed; nothing here is exported.
 */
#ifndef KW_REDIS_H
#define KW_REDIS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <keyway/module.h>

struct redisContext;
struct redisReply;

/* Seconds a counter, a charge and its retry token outlive their window:
 * room for the hosts' clocks to disagree with Redis's. */
#define RD_GRACE 300

/* Idle connections kept for the next command (more may be in use: a
 * command that finds none idle makes one). */
#define RD_POOL_MAX 8

/* One connection: idle in st->idle, or held by the command using it. */
struct rd_conn {
	struct rd_state *st;
	struct redisContext *c;
	struct rd_conn *next;        /* st->idle, under st->lock, while idle */
	char sha[2][41];             /* the scripts as SCRIPT LOAD named them */
	bool used;                   /* has answered a command */
};

/*
 * The ledger.  Immutable after open() but for the idle connections
 * (under lock, never held across a network call).
 */
struct rd_state {
	const kw_host *host;
	const kw_instance *inst;
	char *address;        /* as written, for messages */
	char *hostname;       /* NULL for a Unix socket */
	char *socket_path;    /* NULL for TCP */
	int port;
	char *username;       /* NULL: none (the default user) */
	char *password;       /* secure_alloc'd; NULL: none */
	size_t password_len;
	size_t password_size; /* bytes allocated */
	char *password_file;  /* for messages */
	int64_t db;
	char *prefix;
	int64_t connect_timeout_ms;
	int64_t timeout_ms;
	int64_t usage_days;   /* how long the usage log keeps rows */
	pthread_mutex_t lock;
	bool lock_made;
	struct rd_conn *idle; /* the pool, most recently used first */
	size_t nidle;
};

/* The scripts, by index into rd_conn.sha. */
enum rd_script { RD_CHARGE, RD_REFUND, RD_NSCRIPTS };
extern const char *const rd_script_text[RD_NSCRIPTS];

/* ---- conn.c ---- */

/*
 * A connection for one command (or a few in a row), connected,
 * authenticated and with the scripts loaded: an idle one of the pool, or
 * else a new one; fresh = true for a new one whatever is idle.  It is the
 * caller's until rd_conn_put() or rd_conn_drop().  On failure NULL, with
 * the reason (naming the address, no secret) through reply_detail(r) and
 * the status in *rc: KW_ERR_UNAVAIL when Redis cannot be reached or does
 * not answer, KW_ERR_PERM when it refuses the password, KW_ERR_BACKEND
 * otherwise.
 */
struct rd_conn *rd_conn_get(struct rd_state *st, bool fresh, kw_reply *r,
			    kw_status *rc);
/* Give a connection back to the pool after its commands answered; one
 * that failed, or one more than RD_POOL_MAX idle, is closed. */
void rd_conn_put(struct rd_conn *cn);
/* Close a connection that failed (its state is unknown). */
void rd_conn_drop(struct rd_conn *cn);
/* Close every idle connection: one of them broke, as the others may have
 * (Redis restarted), and the next commands connect afresh. */
void rd_conn_flush(struct rd_state *st);
/* Every idle connection of st, at close(). */
void rd_conn_free_all(struct rd_state *st);
/*
 * Send one command and read its answer, with SIGPIPE held off: NULL on a
 * broken connection (which the caller drops), with the reason through r
 * and *rc.
 * The caller frees the reply with freeReplyObject().
 */
struct redisReply *rd_command(struct rd_conn *cn, int argc,
			      const char **argv, const size_t *argvlen,
			      kw_reply *r, kw_status *rc);
/* Fill the reason a command failed on cn into r; *rc as above. */
void rd_fail_io(struct rd_conn *cn, const char *what, kw_reply *r,
		kw_status *rc);
/* Was the connection lost by a timeout (no retry then)? */
bool rd_timed_out(const struct rd_conn *cn);

/* ---- ledger.c ---- */

kw_status rd_charge(void *state, kw_charge *c, bool dry_run, kw_reply *r);
kw_status rd_refund(void *state, const kw_charge *c, kw_reply *r);
kw_status rd_usage(void *state, const kw_usage_filter *f, kw_usage_fn *fn,
		   void *arg, kw_reply *r);
kw_status rd_check(void *state, kw_reply *r);

/* Is this error reply one Redis gives while it cannot work for now
 * (loading its data, busy, a replica, its master down)? */
bool rd_err_transient(const struct redisReply *rep);

#endif /* KW_REDIS_H */
