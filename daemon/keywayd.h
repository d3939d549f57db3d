/*
 * keywayd.h - what the parts of keywayd(8) share: the daemon's own
 * settings, the generation of configuration requests run against, and the
 * leases of the keys it handed out.
 */
#ifndef KEYWAYD_H
#define KEYWAYD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>
#include <microhttpd.h>

#include <keyway/keyway.h>

/* One entry of daemon.clients: a user or a group, and its chains. */
struct kwd_client {
	bool is_group;
	uid_t uid;
	gid_t gid;
	char **chains;
	size_t nchains;
};

/* The `daemon` section of keyway.conf. */
struct kwd_conf {
	char *socket;		/* NULL: the default, or --socket */
	mode_t socket_mode;
	gid_t socket_gid;	/* (gid_t)-1: leave the group as created */
	unsigned lease_ttl;	/* seconds */
	unsigned max_leases;	/* keys held at once */
	unsigned rate_limit;	/* requests a second per caller; 0: none */
	bool have_clients;
	struct kwd_client *clients;
	size_t nclients;
	char *admin_socket;	/* NULL: no admin socket, unless --admin-socket */
	mode_t admin_socket_mode;
	gid_t admin_gid;	/* (gid_t)-1: no admin group */
	char *tcp;		/* "127.0.0.1:8377" as written; NULL: no TCP */
	struct sockaddr_storage tcp_addr;
	socklen_t tcp_addrlen;
	char *tcp_token;	/* from daemon.tcp_token_file; wiped on free */
	size_t tcp_token_len;
	char **tcp_chains;	/* the chains TCP callers may use */
	size_t ntcp_chains;
};

/* What kwd_conf_load() found. */
enum kwd_conf_status {
	KWD_CONF_OK,
	KWD_CONF_BAD,      /* the daemon section is wrong: err says why */
	KWD_CONF_UNREAD,   /* the file does not read or parse: libkeyway's
			    * kw_open() or kw_check() says why, and err */
	KWD_CONF_CLIENT    /* a client's configuration (keyway.daemon) */
};

/* Read the `daemon` section of path into *dc (zeroed first, defaults
 * set).  On failure a one-line reason is in err. */
enum kwd_conf_status kwd_conf_load(const char *path, struct kwd_conf *dc,
				   char *err, size_t errsz);
void kwd_conf_free(struct kwd_conf *dc);

/* May the caller (uid, its groups) use chain?  Without clients: only
 * root and the daemon's own user. */
bool kwd_conf_allows(const struct kwd_conf *dc, uid_t uid, const gid_t *groups,
		     int ngroups, const char *chain);

/* May the caller use any chain at all (root and the daemon's own user
 * may)? */
bool kwd_conf_allows_some(const struct kwd_conf *dc, uid_t uid,
			  const gid_t *groups, int ngroups);

/* May a TCP caller use chain (daemon.tcp_chains)? */
bool kwd_conf_tcp_allows(const struct kwd_conf *dc, const char *chain);

/* A configuration in use: a context and the daemon's settings, released
 * when the last request or lease holding it lets go. */
struct kwd_gen {
	kw_ctx *ctx;
	struct kwd_conf conf;
	unsigned refs;
	bool retired;
};

struct kwd_gen *kwd_gen_get(void);
void kwd_gen_put(struct kwd_gen *g);

/* Leases: a resolved secret held until it is reported or expires. */
#define KWD_LEASE_ID_LEN 32

enum kwd_report {
	KWD_REPORT_OK,
	KWD_REPORT_UNKNOWN,	/* never handed out, or long forgotten */
	KWD_REPORT_GONE,	/* already reported, or expired (counted used) */
	KWD_REPORT_FAILED	/* the library refused: kw_last_error() */
};

/* A new lease id into id (KWD_LEASE_ID_LEN hex digits and a NUL). */
bool kwd_lease_id(char *id);
/* Whether there is room for one more key of uid: kwd_lease_reserve(). */
enum kwd_room {
	KWD_ROOM_OK,
	KWD_ROOM_FULL,		/* max keys held, none of them uid's */
	KWD_ROOM_NOMEM
};

/*
 * Take room for one more key of uid in a table of at most max, before the
 * key is resolved.  When the table is full, or uid holds half of it while
 * others hold keys too, uid's own oldest leases count as used at once to
 * make room; another caller's lease never does.  KWD_ROOM_FULL when the
 * table is full and uid holds none.  The room is given back by
 * kwd_lease_add() or kwd_lease_unreserve().
 */
enum kwd_room kwd_lease_reserve(uid_t uid, unsigned max);
void kwd_lease_unreserve(uid_t uid);
/*
 * Hold s and a reference to g the caller took for it, for the caller uid,
 * under id, in the room kwd_lease_reserve() took.  Once it returns true
 * the lease owns both, and may let go of them at any moment (a later
 * resolve of the same caller may count it used): the caller must have
 * written its answer before, and touch neither after.  False without
 * memory; the caller keeps both, and the room is given back.
 */
bool kwd_lease_add(kw_secret *s, struct kwd_gen *g, uid_t uid, unsigned ttl,
		   const char *id);
/* Report lease id for the caller uid: another user's lease is unknown. */
enum kwd_report kwd_lease_report(const char *id, uid_t uid,
				 kw_outcome outcome, kw_status *st);
/* Count as used every lease past its time; forget old tombstones. */
void kwd_lease_sweep(void);
/* Report every lease still held as used (at exit). */
void kwd_lease_drain(void);
size_t kwd_lease_count(void);

/* The key of a caller for rate limits and refusals: "uid 1000" for a Unix
 * caller, "tcp 127.0.0.1" (its address, no port) for a TCP caller. */
#define KWD_KEY_MAX 64
size_t kwd_key_hash(const char *key);

/* May the caller who (its key) make one more request at rate a second?
 * Always with rate 0. */
bool kwd_rate_take(const char *who, unsigned rate);
void kwd_rate_free(void);

void kwd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- what the listeners share (keywayd.c) ---- */

/* Which listener a connection came in on: the cls given to MHD. */
enum kwd_via {
	KWD_VIA_UNIX = 0,	/* the socket of resolve, report, ... */
	KWD_VIA_ADMIN,		/* the admin socket (admin.c) */
	KWD_VIA_TCP		/* daemon.tcp (tcp.c) */
};

/* The uid that stands for every TCP caller, for leases. */
#define KWD_TCP_UID ((uid_t)-1)

#define KWD_MAX_GROUPS 256

/* Who is at the other end of a Unix connection (SO_PEERCRED). */
struct kwd_caller {
	pid_t pid;
	uid_t uid;
	gid_t groups[KWD_MAX_GROUPS];
	int ngroups;
	char name[64];
};

/* Who is at the other end of c, with the groups its process holds; its
 * name only with name (else its uid as a number). */
bool kwd_who(struct MHD_Connection *c, bool name, struct kwd_caller *who);
/* j as one line of JSON, with code; j is released.  hdr (NULL: none)
 * and val: one more header, as Retry-After. */
enum MHD_Result kwd_send_json(struct MHD_Connection *c, unsigned code,
			      json_t *j, const char *hdr, const char *val);
/* {"error":"...","status":"..."} with code. */
enum MHD_Result kwd_send_error(struct MHD_Connection *c, unsigned code,
			       const char *status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The same with "code":CODE beside them, when code is not NULL. */
enum MHD_Result kwd_send_coded(struct MHD_Connection *c, unsigned http,
			       const char *status, const char *code,
			       const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* The protocol's "code" for a status it answers "error" (crypto, io,
 * ...), else NULL. */
const char *kwd_code_word(kw_status st);
/* The most of a string a caller sent (a chain's name) that a log line or
 * an audit refusal repeats, in bytes. */
#define KWD_FIELD_MAX 64
/* How much of s (its length, or less) to repeat: at most KWD_FIELD_MAX
 * bytes, never cut in a UTF-8 character. */
int kwd_field_len(const char *s);

/* A refused request, for kwd_refused(). */
struct kwd_refusal {
	const char *op;		/* "resolve", "put", ... */
	const char *caller;	/* a user name, "tcp 127.0.0.1:40112" */
	long long uid;		/* -1: none */
	long long pid;		/* 0: not known */
	const char *chain;	/* NULL: none; cut to KWD_FIELD_MAX */
	const char *provider;	/* likewise */
	const char *reason;	/* one line */
	const char *line;	/* the log line, "audit: refused ..." */
};

/* Record the refusal r of the caller key ("uid 1000", "tcp 127.0.0.1") in
 * the log and the audit trail of g, at most once a second for each caller
 * and reason: those within the second are counted into the next record
 * (refuse.c). */
void kwd_refused(struct kwd_gen *g, const char *key,
		 const struct kwd_refusal *r);
/* Record what was counted in seconds now over (all: every one), in the
 * audit trail of the generation in use; once a second. */
void kwd_refused_flush(bool all);
void kwd_refused_free(void);

/* ---- sockets (sock.c) ---- */

/* A Unix socket at path, mode and group (gid (gid_t)-1: as created),
 * listening; what names the setting in messages.  A socket already at
 * path is taken over only when nothing serves it.  -1 after logging. */
int kwd_listen_unix(const char *path, mode_t mode, gid_t gid,
		    const char *what);
/* Remove the socket at path if it is still the one this process bound
 * there (kwd_listen_unix()), not one another process bound since. */
void kwd_unlink_unix(const char *path);
/* A TCP socket bound to sa, listening; -1 after logging. */
int kwd_listen_tcp(const struct sockaddr_storage *sa, socklen_t len,
		   const char *what);

/* ---- the admin socket (admin.c) ---- */

/* Answer a request on the admin socket, its body read whole. */
enum MHD_Result kwd_admin_answer(struct MHD_Connection *c, const char *url,
				 const char *method, const char *body,
				 size_t len);
/* jansson's allocations wiped when freed: the key of a put passes through
 * its strings.  Call before any other jansson call. */
void kwd_json_wiped(void);

/* ---- TCP (tcp.c) ---- */

/* "127.0.0.1:8377" or "[::1]:8377" into *sa; false with why (for a name
 * or an address that is not loopback). */
bool kwd_tcp_parse(const char *s, struct sockaddr_storage *sa,
		   socklen_t *len, char *why, size_t whysz);
/* Read the token of path, checked as a private file; false with why. */
bool kwd_tcp_read_token(const char *path, char **tok, size_t *len,
			char *why, size_t whysz);
/* Does c carry "Authorization: Bearer <g's token>"?  When not, answers
 * 401, records the refusal and returns false. */
bool kwd_tcp_admit(struct MHD_Connection *c, struct kwd_gen *g,
		   const char *url, enum MHD_Result *ret);
/* "tcp 127.0.0.1:40112": the peer of c, for messages. */
void kwd_tcp_peer(struct MHD_Connection *c, char *buf, size_t size);
/* "tcp": the key of every TCP caller (KWD_KEY_MAX bytes), for its rate
 * and its refusals: one for all, as they have no uid and any local user
 * may bind any loopback address. */
void kwd_tcp_key(struct MHD_Connection *c, char *buf, size_t size);

/* ---- denials (deny.c) ---- */

/* Is the library's error err a quota used up?  *retry_after: seconds
 * until its window ends, or 0 when that is not known. */
bool kwd_quota_denial(const char *err, long *retry_after);

#endif
