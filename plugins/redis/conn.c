/*
 * conn.c - the redis ledger's connections: a small pool shared by the
 * threads.  A command takes an idle connection (or connects a new one,
 * outside the lock), runs, and gives it back; a connection that failed
 * (an I/O error, a timeout, a broken answer) is closed, not given back.
 * At most RD_POOL_MAX wait idle; more are made while more commands run
 * at once, and closed when they are given back to a full pool.  So
 * threads that come and go (a server's thread per client) reuse the
 * connections of those that went, rather than each connecting,
 * authenticating and loading the scripts again.  st->lock guards only
 * the idle list, and is never held across a network call.
 *
 * A connection is authenticated (AUTH with the password of password_file,
 * and username for a Redis ACL), on its db, and has the scripts loaded
 * (SCRIPT LOAD), all in one round trip.  AUTH is written from guarded
 * memory, not through hiredis's buffers.  hiredis writes with write(): a
 * connection Redis has closed would raise SIGPIPE, so commands run with
 * SIGPIPE blocked in the calling thread, and one it raised is taken back.
 * Every command has timeout_ms; a connection that timed out is closed (a
 * late answer must not be read as the next command's).  A script Redis
 * has forgotten (NOSCRIPT) is sent whole (ledger.c).  A connection that
 * broke while idle (Redis restarted, or closed it) is found on use: the
 * idle ones are closed with it, and the command is sent once more on a
 * new connection, which only commands that may run twice do (ledger.c).
 *
 * close() frees the idle connections (none is in use then).  The sockets
 * are close-on-exec; after fork() the library refuses the child the
 * parent's context and does not close its modules, so a child never
 * uses, nor closes, the parent's connections.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf(), strndup() */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include <keyway/module.h>

#include "redis.h"

static struct timeval rd_tv(int64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

/* Hold off SIGPIPE in this thread; *pending: one was waiting already. */
static void rd_nopipe_begin(sigset_t *old, bool *pending)
{
	sigset_t pipe_set, now;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, old);
	*pending = sigpending(&now) == 0 && sigismember(&now, SIGPIPE) == 1;
}

/* Take back a SIGPIPE the command raised (failed: it may have), and let
 * SIGPIPE through again. */
static void rd_nopipe_end(const sigset_t *old, bool pending, bool failed)
{
	if (failed && !pending) {
		sigset_t pipe_set;
		const struct timespec zero = { 0, 0 };

		sigemptyset(&pipe_set);
		sigaddset(&pipe_set, SIGPIPE);
		while (sigtimedwait(&pipe_set, NULL, &zero) > 0)
			;
	}
	pthread_sigmask(SIG_SETMASK, old, NULL);
}

bool rd_timed_out(const struct rd_conn *cn)
{
	return cn->c != NULL && cn->c->err == REDIS_ERR_IO &&
	       (strstr(cn->c->errstr, "temporarily unavailable") != NULL ||
		strstr(cn->c->errstr, "timed out") != NULL);
}

void rd_fail_io(struct rd_conn *cn, const char *what, kw_reply *r,
		kw_status *rc)
{
	const struct rd_state *st = cn->st;
	const char *why = cn->c != NULL && cn->c->errstr[0] != '\0'
				  ? cn->c->errstr
				  : "connection lost";

	if (rd_timed_out(cn))
		st->host->reply_detail(r,
				       "redis %s: no answer to %s within "
				       "timeout_ms = %lld",
				       st->address, what,
				       (long long)st->timeout_ms);
	else
		st->host->reply_detail(r, "redis %s: %s failed: %s",
				       st->address, what, why);
	*rc = KW_ERR_UNAVAIL;
}

static void rd_conn_close(struct rd_conn *cn)
{
	if (cn->c != NULL)
		redisFree(cn->c);
	free(cn);
}

void rd_conn_drop(struct rd_conn *cn)
{
	if (cn != NULL)
		rd_conn_close(cn);
}

void rd_conn_put(struct rd_conn *cn)
{
	struct rd_state *st;

	if (cn == NULL)
		return;
	st = cn->st;
	if (cn->c != NULL && cn->c->err == 0) {
		pthread_mutex_lock(&st->lock);
		if (st->nidle < RD_POOL_MAX) {
			cn->next = st->idle;
			st->idle = cn;
			st->nidle++;
			cn = NULL;
		}
		pthread_mutex_unlock(&st->lock);
	}
	if (cn != NULL)
		rd_conn_close(cn);
}

void rd_conn_flush(struct rd_state *st)
{
	struct rd_conn *cn, *next;

	pthread_mutex_lock(&st->lock);
	cn = st->idle;
	st->idle = NULL;
	st->nidle = 0;
	pthread_mutex_unlock(&st->lock);
	for (; cn != NULL; cn = next) {
		next = cn->next;
		rd_conn_close(cn);
	}
}

void rd_conn_free_all(struct rd_state *st)
{
	if (st->lock_made)
		rd_conn_flush(st);
}

struct redisReply *rd_command(struct rd_conn *cn, int argc,
			      const char **argv, const size_t *argvlen,
			      kw_reply *r, kw_status *rc)
{
	redisReply *rep;
	sigset_t old;
	bool pending;

	rd_nopipe_begin(&old, &pending);
	rep = redisCommandArgv(cn->c, argc, argv, argvlen);
	rd_nopipe_end(&old, pending, rep == NULL);
	if (rep == NULL)
		rd_fail_io(cn, argv[0], r, rc);
	else
		cn->used = true;
	return rep;
}

/* Does an error reply start with this code ("WRONGPASS", "NOAUTH")? */
static bool rd_err_is(const redisReply *rep, const char *code)
{
	size_t n = strlen(code);

	return rep->type == REDIS_REPLY_ERROR && rep->str != NULL &&
	       strncmp(rep->str, code, n) == 0 &&
	       (rep->str[n] == ' ' || rep->str[n] == '\0');
}

/* Open the socket, close-on-exec, with the command timeout. */
static kw_status rd_connect(struct rd_conn *cn, kw_reply *r)
{
	const struct rd_state *st = cn->st;
	const kw_host *h = st->host;
	struct timeval ctv = rd_tv(st->connect_timeout_ms);
	int flags;

	if (st->socket_path != NULL)
		cn->c = redisConnectUnixWithTimeout(st->socket_path, ctv);
	else
		cn->c = redisConnectWithTimeout(st->hostname, st->port, ctv);
	if (cn->c == NULL) {
		h->reply_detail(r, "redis %s: cannot connect: out of memory",
				st->address);
		return KW_ERR_NOMEM;
	}
	if (cn->c->err != 0) {
		if (strstr(cn->c->errstr, "timed out") != NULL ||
		    strstr(cn->c->errstr, "in progress") != NULL)
			h->reply_detail(r,
					"redis %s: cannot connect within "
					"connect_timeout_ms = %lld",
					st->address,
					(long long)st->connect_timeout_ms);
		else
			h->reply_detail(r,
					"redis %s: cannot connect: %s (is "
					"redis-server running there?)",
					st->address, cn->c->errstr);
		return KW_ERR_UNAVAIL;
	}
	flags = fcntl(cn->c->fd, F_GETFD);
	if (flags >= 0)
		(void)fcntl(cn->c->fd, F_SETFD, flags | FD_CLOEXEC);
	if (redisSetTimeout(cn->c, rd_tv(st->timeout_ms)) != REDIS_OK) {
		h->reply_detail(r, "redis %s: cannot set timeout_ms: %s",
				st->address, cn->c->errstr);
		return KW_ERR_UNAVAIL;
	}
	return KW_OK;
}

/* What AUTH's answer means, into r. */
static kw_status rd_auth_failed(const struct rd_state *st,
				const redisReply *rep, kw_reply *r)
{
	const kw_host *h = st->host;

	if (rep->str != NULL &&
	    strstr(rep->str, "without any password configured") != NULL) {
		h->reply_detail(r,
				"redis %s: Redis has no password set, though "
				"password_file names one: set requirepass in "
				"its redis.conf, or drop password_file",
				st->address);
		return KW_ERR_PERM;
	}
	if (rd_err_is(rep, "ERR") && st->username != NULL &&
	    rep->str != NULL && strstr(rep->str, "wrong number") != NULL) {
		h->reply_detail(r,
				"redis %s: Redis takes no user name (it is "
				"older than 6.0): drop username",
				st->address);
		return KW_ERR_PERM;
	}
	if (rd_err_is(rep, "WRONGPASS") || rd_err_is(rep, "ERR")) {
		if (st->username != NULL)
			h->reply_detail(r,
					"redis %s: Redis refuses user \"%s\" "
					"with the password of %s: put the "
					"right password in that file, or fix "
					"the user's ACL",
					st->address, st->username,
					st->password_file);
		else
			h->reply_detail(r,
					"redis %s: Redis refuses the password "
					"of %s: put its requirepass in that "
					"file",
					st->address, st->password_file);
		return KW_ERR_PERM;
	}
	h->reply_detail(r, "redis %s: AUTH failed: %.200s", st->address,
			rep->str != NULL ? rep->str : "unexpected answer");
	return KW_ERR_BACKEND;
}

bool rd_err_transient(const redisReply *rep)
{
	static const char *const codes[] = { "LOADING",	   "BUSY",
					     "MASTERDOWN", "TRYAGAIN",
					     "CLUSTERDOWN", "READONLY" };

	if (rep->type != REDIS_REPLY_ERROR || rep->str == NULL)
		return false;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		size_t n = strlen(codes[i]);

		if (strncmp(rep->str, codes[i], n) == 0 &&
		    (rep->str[n] == ' ' || rep->str[n] == '\0'))
			return true;
	}
	return false;
}

/* A command of the setup (SELECT, SCRIPT LOAD) that Redis refused. */
static kw_status rd_setup_failed(const struct rd_state *st, const char *what,
				 const redisReply *rep, kw_reply *r)
{
	const kw_host *h = st->host;

	if (rd_err_is(rep, "NOAUTH")) {
		h->reply_detail(r,
				"redis %s: Redis asks for a password: set "
				"password_file to a file that holds it",
				st->address);
		return KW_ERR_PERM;
	}
	if (rd_err_is(rep, "NOPERM")) {
		h->reply_detail(r,
				"redis %s: the ACL of user \"%s\" does not "
				"allow %s: allow it what keyway.conf(5) "
				"lists, on the keys ~%s*",
				st->address,
				st->username != NULL ? st->username
						     : "default",
				what, st->prefix);
		return KW_ERR_PERM;
	}
	h->reply_detail(r, "redis %s: %s failed: %.200s", st->address, what,
			rep->type == REDIS_REPLY_ERROR && rep->str != NULL
				? rep->str
				: "unexpected answer");
	return rd_err_transient(rep) ? KW_ERR_UNAVAIL : KW_ERR_BACKEND;
}

/* Append a RESP bulk string to buf at *len. */
static void rd_bulk(char *buf, size_t *len, const char *s, size_t n)
{
	*len += (size_t)sprintf(buf + *len, "$%zu\r\n", n);
	memcpy(buf + *len, s, n);
	*len += n;
	memcpy(buf + *len, "\r\n", 2);
	*len += 2;
}

/*
 * Write AUTH to the socket ourselves, from guarded memory wiped after:
 * hiredis would copy the password into buffers it frees unwiped.  Its
 * answer is read as any other, first.
 */
static bool rd_send_auth(struct rd_conn *cn)
{
	const struct rd_state *st = cn->st;
	size_t user_len = st->username != NULL ? strlen(st->username) : 0;
	size_t size = 64 + user_len + st->password_len, len = 0, off = 0;
	char *buf = st->host->secure_alloc(size);
	bool ok = true;

	if (buf == NULL)
		return false;
	len = (size_t)sprintf(buf, "*%d\r\n", st->username != NULL ? 3 : 2);
	rd_bulk(buf, &len, "AUTH", 4);
	if (st->username != NULL)
		rd_bulk(buf, &len, st->username, user_len);
	rd_bulk(buf, &len, st->password, st->password_len);
	while (off < len) {
		ssize_t w = write(cn->c->fd, buf + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(cn->c->errstr, sizeof(cn->c->errstr), "%s",
				 w < 0 ? strerror(errno) : "connection closed");
			cn->c->err = REDIS_ERR_IO;
			ok = false;
			break;
		}
		off += (size_t)w;
	}
	st->host->secure_free(buf, size);
	return ok;
}

/*
 * AUTH, SELECT and SCRIPT LOAD of each script, sent at once; their
 * answers read in turn.  The password goes only into the command.
 */
static kw_status rd_setup(struct rd_conn *cn, kw_reply *r)
{
	const struct rd_state *st = cn->st;
	const char *argv[3];
	size_t argvlen[3];
	char db[24];
	int n = 0, sent;
	bool auth = st->password != NULL, failed = false;
	redisReply *rep = NULL;
	kw_status rc = KW_OK;
	sigset_t old;
	bool pending;

	rd_nopipe_begin(&old, &pending);
	if (auth) {
		if (!rd_send_auth(cn)) {
			rd_nopipe_end(&old, pending, true);
			rd_fail_io(cn, "AUTH", r, &rc);
			return rc;
		}
		n++;
	}
	if (st->db != 0) {
		snprintf(db, sizeof(db), "%lld", (long long)st->db);
		argv[0] = "SELECT";
		argvlen[0] = 6;
		argv[1] = db;
		argvlen[1] = strlen(db);
		(void)redisAppendCommandArgv(cn->c, 2, argv, argvlen);
		n++;
	}
	for (int i = 0; i < RD_NSCRIPTS; i++) {
		argv[0] = "SCRIPT";
		argvlen[0] = 6;
		argv[1] = "LOAD";
		argvlen[1] = 4;
		argv[2] = rd_script_text[i];
		argvlen[2] = strlen(rd_script_text[i]);
		(void)redisAppendCommandArgv(cn->c, 3, argv, argvlen);
		n++;
	}
	sent = n;
	for (int i = 0; i < sent; i++) {
		if (redisGetReply(cn->c, (void **)&rep) != REDIS_OK ||
		    rep == NULL) {
			failed = true;
			rd_fail_io(cn, "the first commands", r, &rc);
			break;
		}
		if (auth && i == 0) {
			if (rep->type == REDIS_REPLY_ERROR && rc == KW_OK)
				rc = rd_auth_failed(st, rep, r);
		} else if (st->db != 0 && i == (auth ? 1 : 0)) {
			if (rep->type == REDIS_REPLY_ERROR && rc == KW_OK)
				rc = rd_setup_failed(st, "SELECT", rep, r);
		} else {
			int k = i - (sent - RD_NSCRIPTS);

			if (rep->type == REDIS_REPLY_STRING && rep->len == 40) {
				memcpy(cn->sha[k], rep->str, 40);
				cn->sha[k][40] = '\0';
			} else if (rc == KW_OK) {
				rc = rd_setup_failed(st, "SCRIPT LOAD", rep, r);
			}
		}
		freeReplyObject(rep);
		rep = NULL;
	}
	rd_nopipe_end(&old, pending, failed);
	return rc;
}

/* An idle connection of the pool, or NULL. */
static struct rd_conn *rd_conn_take(struct rd_state *st)
{
	struct rd_conn *cn;

	pthread_mutex_lock(&st->lock);
	cn = st->idle;
	if (cn != NULL) {
		st->idle = cn->next;
		st->nidle--;
		cn->next = NULL;
	}
	pthread_mutex_unlock(&st->lock);
	return cn;
}

struct rd_conn *rd_conn_get(struct rd_state *st, bool fresh, kw_reply *r,
			    kw_status *rc)
{
	struct rd_conn *cn = fresh ? NULL : rd_conn_take(st);

	*rc = KW_OK;
	if (cn != NULL)
		return cn;
	cn = calloc(1, sizeof(*cn));
	if (cn == NULL) {
		st->host->reply_detail(r, "out of memory");
		*rc = KW_ERR_NOMEM;
		return NULL;
	}
	cn->st = st;
	*rc = rd_connect(cn, r);
	if (*rc == KW_OK)
		*rc = rd_setup(cn, r);
	if (*rc != KW_OK) {
		rd_conn_close(cn);
		return NULL;
	}
	return cn;
}
