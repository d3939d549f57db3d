/*
 * audit.c - the audit trail: one JSON object per resolve and per change,
 * to a file (one line each) or to syslog.
 *
 * syslog(3) cannot say whether a message reached the daemon, and an event
 * that was lost must fail as on_failure says; so the syslog sink sends its
 * datagrams to the log socket itself, framed as syslog(3) frames them.
 *
 * A resolve is recorded with a fingerprint of the key it handed out:
 * HMAC-SHA256 under a key derived from the master key, so the same key
 * always has the same fingerprint, different keys differ, and nothing in
 * the trail helps to recover a key.  Lines go to the file with one write()
 * on a descriptor opened O_APPEND, so concurrent writers, threads or
 * processes, do not interleave; a line the file had no room for is taken
 * back, so that every line in the file stays one whole JSON object, under
 * a lock on the whole file that every writer takes, so that taking a line
 * back never takes another process's line with it.
 *
 * Every resolve pays for its line before the key is handed out, so the
 * line is cheap to make: the HMAC's keyed inner and outer states are
 * computed once, at open, and copied for each line; the line is written
 * straight into a buffer on the stack (the heap only for a line that does
 * not fit), with the escaping jansson's compact output has always had; and
 * each thread formats the seconds of its timestamp once per second.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "internal.h"

#define FP_LEN 16 /* bytes of the HMAC kept: 128 bits */

#define LOG_SOCKET "/dev/log"
#define SUN_PATH_SIZE sizeof(((struct sockaddr_un *)0)->sun_path)

struct kwi_audit {
	enum { AUDIT_JSONL = 1, AUDIT_SYSLOG } sink;
	bool allow;          /* on_failure = "allow" */
	int fd;
	char path[1024];
	const char *file;    /* where path is set, for messages */
	int line;
	char socket[SUN_PATH_SIZE]; /* the syslog daemon's */
	int sock;            /* connected to it, or -1 */
	bool stream;         /* sock is SOCK_STREAM: messages end in NUL */
	/* Held around each write, so that a short one can be taken back. */
	pthread_mutex_t lock;
	bool locked;         /* lock initialised */
	bool torn;           /* the file may end in part of a line */
	/* HMAC state keyed with the fingerprint key (guarded); read-only
	 * once open, so threads copy it without a lock. */
	crypto_auth_hmacsha256_state *fp_state;
};

static const char fp_label[] = "keyway audit fingerprint v1";

kw_status kwi_audit_parse(struct kw_ctx *ctx, const config_setting_t *g,
			  const char *file, struct kwi_diag *d)
{
	const char *sink = NULL, *path = NULL, *sock = NULL,
		   *on_failure = NULL;
	struct kwi_audit *a;
	int n, line = (int)config_setting_source_line(g), path_line = line;
	int sock_line = line;

	if (!config_setting_is_group(g)) {
		kwi_diag(d, KW_ERR_CONFIG, file, line,
			 "keyway.audit must be a group { sink = ...; }");
		return KW_ERR_CONFIG;
	}
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		const char **slot = strcmp(name, "sink") == 0 ? &sink
				    : strcmp(name, "path") == 0 ? &path
				    : strcmp(name, "socket") == 0 ? &sock
				    : strcmp(name, "on_failure") == 0
					    ? &on_failure
					    : NULL;

		if (slot == NULL) {
			kwi_diag(d, KW_ERR_CONFIG, file,
				 (int)config_setting_source_line(s),
				 "keyway.audit: unknown setting \"%s\" "
				 "(expected sink, path, socket or "
				 "on_failure)",
				 name);
			return KW_ERR_CONFIG;
		}
		if (config_setting_type(s) != CONFIG_TYPE_STRING ||
		    config_setting_get_string(s)[0] == '\0') {
			kwi_diag(d, KW_ERR_CONFIG, file,
				 (int)config_setting_source_line(s),
				 "keyway.audit: %s must be a non-empty string",
				 name);
			return KW_ERR_CONFIG;
		}
		*slot = config_setting_get_string(s);
		if (slot == &path)
			path_line = (int)config_setting_source_line(s);
		else if (slot == &sock)
			sock_line = (int)config_setting_source_line(s);
	}

	a = calloc(1, sizeof(*a));
	if (a == NULL || pthread_mutex_init(&a->lock, NULL) != 0) {
		free(a);
		kwi_diag(d, KW_ERR_NOMEM, file, line,
			 "keyway.audit: out of memory");
		return KW_ERR_NOMEM;
	}
	a->locked = true;
	a->fd = -1;
	a->sock = -1;
	a->file = file;
	a->line = path_line;
	ctx->audit = a;
	if (sink != NULL && strcmp(sink, "syslog") == 0) {
		a->sink = AUDIT_SYSLOG;
		if (path != NULL) {
			kwi_diag(d, KW_ERR_CONFIG, file, line,
				 "keyway.audit: sink \"syslog\" takes no path");
			return KW_ERR_CONFIG;
		}
		if (sock == NULL)
			sock = LOG_SOCKET;
		if ((size_t)snprintf(a->socket, sizeof(a->socket), "%s%s%s",
				     sock[0] == '/' ? "" : ctx->dir,
				     sock[0] == '/' ? "" : "/",
				     sock) >= sizeof(a->socket)) {
			kwi_diag(d, KW_ERR_CONFIG, file, sock_line,
				 "keyway.audit: socket: a path of at most %zu "
				 "bytes",
				 sizeof(a->socket) - 1);
			return KW_ERR_CONFIG;
		}
	} else if (sink != NULL && strcmp(sink, "jsonl") == 0) {
		a->sink = AUDIT_JSONL;
		if (path == NULL) {
			kwi_diag(d, KW_ERR_CONFIG, file, line,
				 "keyway.audit: sink \"jsonl\" needs a path");
			return KW_ERR_CONFIG;
		}
		if (sock != NULL) {
			kwi_diag(d, KW_ERR_CONFIG, file, sock_line,
				 "keyway.audit: sink \"jsonl\" takes no socket");
			return KW_ERR_CONFIG;
		}
		if (path[0] == '/')
			snprintf(a->path, sizeof(a->path), "%s", path);
		else
			snprintf(a->path, sizeof(a->path), "%s/%s", ctx->dir,
				 path);
	} else {
		kwi_diag(d, KW_ERR_CONFIG, file, line,
			 "keyway.audit: sink must be \"jsonl\" or \"syslog\"");
		return KW_ERR_CONFIG;
	}
	if (on_failure != NULL && strcmp(on_failure, "allow") == 0) {
		a->allow = true;
	} else if (on_failure != NULL && strcmp(on_failure, "deny") != 0) {
		kwi_diag(d, KW_ERR_CONFIG, file, line,
			 "keyway.audit: on_failure must be \"deny\" or "
			 "\"allow\"");
		return KW_ERR_CONFIG;
	}
	/* A master key that is set but failed has said so itself. */
	if (config_setting_get_member(config_setting_parent(g),
				      "master_key") == NULL) {
		kwi_diag(d, KW_ERR_CONFIG, file, line,
			 "keyway.audit: key fingerprints are keyed with the "
			 "master key: set keyway.master_key");
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

/* The fingerprint key: from the master key, or for a passphrase from the
 * passphrase stretched once over a fixed salt. */
static kw_status fp_key(struct kw_ctx *ctx, unsigned char *out)
{
	static const unsigned char salt[KW_SALT_SIZE] = "keyway-audit-fp";
	const struct kwi_master *m = &ctx->masters[0];
	unsigned char base[32];
	kw_status rc = KW_OK;

	if (m->source != KWI_KEY_PASSPHRASE)
		memcpy(base, m->key, sizeof(base));
	else if (crypto_pwhash(base, sizeof(base), m->pass, m->pass_len, salt,
			       2, 19u * 1024 * 1024,
			       crypto_pwhash_ALG_ARGON2ID13) != 0)
		rc = KW_ERR_NOMEM;
	if (rc == KW_OK)
		crypto_auth_hmacsha256(out, (const unsigned char *)fp_label,
				       sizeof(fp_label) - 1, base);
	sodium_memzero(base, sizeof(base));
	return rc;
}

/* Key the HMAC state once: a fingerprint then costs the blocks of the
 * value and one outer block, not the two blocks of the padded key too. */
static kw_status fp_state_init(struct kw_ctx *ctx, struct kwi_audit *a)
{
	unsigned char key[crypto_auth_hmacsha256_KEYBYTES];
	kw_status rc;

	a->fp_state = kwi_secure_alloc(sizeof(*a->fp_state));
	if (a->fp_state == NULL)
		return KW_ERR_NOMEM;
	rc = fp_key(ctx, key);
	if (rc == KW_OK &&
	    crypto_auth_hmacsha256_init(a->fp_state, key, sizeof(key)) != 0)
		rc = KW_ERR_NOMEM;
	sodium_memzero(key, sizeof(key));
	return rc;
}

static const char *file_type(mode_t mode)
{
	return S_ISDIR(mode)    ? "a directory"
	       : S_ISFIFO(mode) ? "a FIFO"
	       : S_ISSOCK(mode) ? "a socket"
	       : S_ISCHR(mode)  ? "a character device"
	       : S_ISBLK(mode)  ? "a block device"
	       : S_ISLNK(mode)  ? "a symbolic link"
				: "not a regular file";
}

/*
 * The rule of every file keyway writes (the SQLite store and ledger, the
 * files host->open_private() opens): a regular file, owned by root or by
 * us, that group and others may not use at all.  The audit trail tells
 * who asked for which key when: it is no more public than the usage log.
 */
static kw_status audit_file_ok(const struct kwi_audit *a, const struct stat *st,
			       struct kwi_diag *d)
{
	if (!S_ISREG(st->st_mode)) {
		kwi_diag(d, KW_ERR_PERM, a->file, a->line,
			 "keyway.audit: %s is %s, not a regular file", a->path,
			 file_type(st->st_mode));
		return KW_ERR_PERM;
	}
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		kwi_diag(d, KW_ERR_PERM, a->file, a->line,
			 "keyway.audit: %s is owned by uid %u; it must belong "
			 "to root or uid %u",
			 a->path, (unsigned)st->st_uid, (unsigned)geteuid());
		return KW_ERR_PERM;
	}
	if (st->st_mode & 077) {
		kwi_diag(d, KW_ERR_PERM, a->file, a->line,
			 "keyway.audit: %s is accessible by group or others "
			 "(mode %04o); it holds the audit trail: chmod 600 it",
			 a->path, (unsigned)(st->st_mode & 07777));
		return KW_ERR_PERM;
	}
	return KW_OK;
}

/* Why the audit file would not open, in words that say what to do. */
static kw_status open_failed(const struct kwi_audit *a, int e,
			     struct kwi_diag *d)
{
	struct stat st;

	if (e == ELOOP) {
		kwi_diag(d, KW_ERR_PERM, a->file, a->line,
			 "keyway.audit: %s is a symbolic link; point the "
			 "setting at the file itself",
			 a->path);
		return KW_ERR_PERM;
	}
	/* A FIFO without a reader (ENXIO), a directory (EISDIR), ... */
	if (lstat(a->path, &st) == 0 && !S_ISREG(st.st_mode))
		return audit_file_ok(a, &st, d);
	kwi_diag(d, e == EACCES ? KW_ERR_PERM : KW_ERR_IO, a->file, a->line,
		 "keyway.audit: cannot open %s: %s", a->path, strerror(e));
	return e == EACCES ? KW_ERR_PERM : KW_ERR_IO;
}

kw_status kwi_audit_open(struct kw_ctx *ctx, struct kwi_diag *d)
{
	struct kwi_audit *a = ctx->audit;
	struct stat st;

	if (a == NULL)
		return KW_OK;
	if (fp_state_init(ctx, a) != KW_OK) {
		kwi_diag(d, KW_ERR_NOMEM, ctx->path, 0,
			 "keyway.audit: cannot derive the fingerprint key");
		return KW_ERR_NOMEM;
	}
	if (a->sink == AUDIT_SYSLOG)
		return KW_OK;
	/* O_NONBLOCK: a FIFO put there must not hang the open.  kw_check()
	 * creates nothing: a missing file is its problem. */
	a->fd = open(a->path,
		     O_WRONLY | O_APPEND | (ctx->checking ? 0 : O_CREAT) |
			     O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK,
		     0600);
	if (a->fd < 0 && errno == ENOENT && ctx->checking) {
		kwi_diag(d, KW_ERR_CONFIG, a->file, a->line,
			 "keyway.audit: %s does not exist: create it with "
			 "keyway init",
			 a->path);
		return KW_ERR_CONFIG;
	}
	if (a->fd < 0)
		return open_failed(a, errno, d);
	if (fstat(a->fd, &st) != 0) {
		kwi_diag(d, KW_ERR_IO, a->file, a->line,
			 "keyway.audit: cannot open %s: %s", a->path,
			 strerror(errno));
		return KW_ERR_IO;
	}
	return audit_file_ok(a, &st, d);
}

void kwi_audit_free(struct kw_ctx *ctx)
{
	struct kwi_audit *a = ctx->audit;

	if (a == NULL)
		return;
	if (a->fd >= 0)
		close(a->fd);
	if (a->sock >= 0)
		close(a->sock);
	if (a->locked)
		pthread_mutex_destroy(&a->lock);
	kwi_secure_free(a->fp_state, sizeof(*a->fp_state));
	free(a);
	ctx->audit = NULL;
}

const char *kwi_audit_path(const struct kw_ctx *ctx)
{
	const struct kwi_audit *a = ctx->audit;

	return a != NULL && a->sink == AUDIT_JSONL ? a->path : NULL;
}

/* ---- one line of JSON ---- */

/* Room for any line of ordinary names; longer ones move to the heap. */
#define LINE_STACK 1024

struct line {
	char *buf;      /* stack, or heap once it outgrew it */
	size_t len;
	size_t cap;
	bool comma;     /* the next member needs a ',' before it */
	bool nomem;
	char stack[LINE_STACK];
};

static void line_init(struct line *l)
{
	l->buf = l->stack;
	l->len = 0;
	l->cap = sizeof(l->stack);
	l->comma = false;
	l->nomem = false;
}

static void line_release(struct line *l)
{
	if (l->buf != l->stack)
		free(l->buf);
}

static bool line_grow(struct line *l, size_t more)
{
	size_t cap = l->cap;
	char *p;

	if (l->nomem)
		return false;
	while (cap - l->len < more) {
		if (cap > SIZE_MAX / 2) {
			l->nomem = true;
			return false;
		}
		cap *= 2;
	}
	if (l->buf == l->stack) {
		p = malloc(cap);
		if (p != NULL)
			memcpy(p, l->buf, l->len);
	} else {
		p = realloc(l->buf, cap);
	}
	if (p == NULL) {
		l->nomem = true;
		return false;
	}
	l->buf = p;
	l->cap = cap;
	return true;
}

/* Inline: a line is made of a few dozen short pieces. */
static inline void put(struct line *l, const void *s, size_t n)
{
	if (l->cap - l->len < n && !line_grow(l, n))
		return;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static inline void put_c(struct line *l, char c)
{
	if (l->cap == l->len && !line_grow(l, 1))
		return;
	l->buf[l->len++] = c;
}

/*
 * Length of the UTF-8 sequence at p (p[0] >= 0x80), or 0 when it is not
 * one: no overlong forms, no surrogates, nothing past U+10FFFF, the same
 * strings jansson's json_string() takes.  p is NUL-terminated, and a NUL
 * ends the check before it reads past it.
 */
static size_t utf8_seq(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 2;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/*
 * s as a JSON string, escaped as jansson writes it: '"' and '\\' escaped,
 * control characters as \b \f \n \r \t or \u00XX (upper-case), anything
 * else, '/' and DEL and UTF-8 included, as it is.  False when s is not
 * UTF-8.
 */
static bool put_string(struct line *l, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s, *run = p;

	put_c(l, '"');
	while (*p != '\0') {
		char esc[6] = { '\\', 'u', '0', '0' };
		size_t n = 2;

		if (*p >= 0x80) {
			n = utf8_seq(p);
			if (n == 0)
				return false;
			p += n;
			continue;
		}
		if (*p >= 0x20 && *p != '"' && *p != '\\') {
			p++;
			continue;
		}
		put(l, run, (size_t)(p - run));
		switch (*p) {
		case '"':
		case '\\':
			esc[1] = (char)*p;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 0xf];
			n = 6;
			break;
		}
		put(l, esc, n);
		run = ++p;
	}
	put(l, run, (size_t)(p - run));
	put_c(l, '"');
	return true;
}

static void put_name(struct line *l, const char *name)
{
	if (l->comma)
		put_c(l, ',');
	l->comma = true;
	put_c(l, '"');
	put(l, name, strlen(name));
	put(l, "\":", 2);
}

/*
 * "name":"value", or "name":null for a NULL value when null_ok.  A member
 * that cannot be a JSON string (NULL where null is not allowed, or not
 * UTF-8) is left out, as it always was when jansson built the line.
 */
static void member(struct line *l, const char *name, const char *value,
		   bool null_ok)
{
	size_t mark = l->len;
	bool comma = l->comma;

	if (value == NULL && !null_ok)
		return;
	put_name(l, name);
	if (value == NULL) {
		put(l, "null", 4);
	} else if (!put_string(l, value)) {
		l->len = mark;
		l->comma = comma;
	}
}

static void object_open(struct line *l, const char *name)
{
	if (name != NULL)
		put_name(l, name);
	put_c(l, '{');
	l->comma = false;
}

static void object_close(struct line *l)
{
	put_c(l, '}');
	l->comma = true;
}

/*
 * "time":"2024-05-01T10:00:00.123Z".  gmtime_r() and strftime() run once
 * a second in each thread (glibc's gmtime_r takes a process-wide lock);
 * the milliseconds are written by hand.
 */
static void member_time(struct line *l)
{
	static _Thread_local struct {
		time_t sec;
		bool set;
		size_t len;
		char text[40];
	} cache;
	struct timespec ts;
	struct tm tm;
	long ms;
	char frac[5];

	clock_gettime(CLOCK_REALTIME, &ts);
	if (!cache.set || cache.sec != ts.tv_sec) {
		if (gmtime_r(&ts.tv_sec, &tm) == NULL)
			memset(&tm, 0, sizeof(tm));
		cache.len = strftime(cache.text, sizeof(cache.text),
				     "%Y-%m-%dT%H:%M:%S", &tm);
		cache.sec = ts.tv_sec;
		cache.set = true;
	}
	ms = ts.tv_nsec / 1000000;
	frac[0] = '.';
	frac[1] = (char)('0' + ms / 100);
	frac[2] = (char)('0' + ms / 10 % 10);
	frac[3] = (char)('0' + ms % 10);
	frac[4] = 'Z';
	put_name(l, "time");
	put_c(l, '"');
	put(l, cache.text, cache.len);
	put(l, frac, sizeof(frac));
	put_c(l, '"');
}

/*
 * Take back the n bytes of a line that did not fit (a full disk, a file
 * size limit), if nothing was written after them.  Under a->lock and the
 * file lock (file_lock()), so the descriptor's offset is where this
 * thread's write ended and no other process appends between the fstat()
 * and the ftruncate(); another process's line after them is left alone.
 */
static bool unwrite(struct kwi_audit *a, size_t n)
{
	off_t end = lseek(a->fd, 0, SEEK_CUR);
	struct stat st;

	return end >= (off_t)n && fstat(a->fd, &st) == 0 &&
	       st.st_size == end && ftruncate(a->fd, end - (off_t)n) == 0;
}

/*
 * Lock (F_WRLCK) or unlock (F_UNLCK) the whole file for this open file
 * description, waiting for another process's writer: every keyway process
 * appends under it, so a line can be taken back without taking another
 * process's line with it.  False when there is no such lock here (a file
 * system without open file description locks): the line is then not taken
 * back, and the next line starts on a line of its own.
 */
static bool file_lock(const struct kwi_audit *a, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET };
	int r;

	do
		r = fcntl(a->fd, F_OFD_SETLKW, &fl);
	while (r != 0 && errno == EINTR);
	return r == 0;
}

/*
 * writev() that cannot kill the process: past the file size limit the
 * kernel sends the writing thread SIGXFSZ, whose default action ends the
 * whole application.  The signal is blocked in this thread around the
 * write and a SIGXFSZ the write raised is taken off again, so the write
 * fails with EFBIG or comes up short instead.  One that was pending or
 * blocked before is the caller's, and left alone.
 */
static ssize_t writev_nosig(int fd, const struct iovec *iov, int cnt)
{
	static const struct timespec now = { 0, 0 };
	sigset_t xfsz, old, pending;
	bool mine;
	ssize_t n;
	int e;

	sigemptyset(&xfsz);
	sigaddset(&xfsz, SIGXFSZ);
	if (pthread_sigmask(SIG_BLOCK, &xfsz, &old) != 0)
		return writev(fd, iov, cnt);
	mine = !sigismember(&old, SIGXFSZ) && sigpending(&pending) == 0 &&
	       !sigismember(&pending, SIGXFSZ);
	n = writev(fd, iov, cnt);
	e = errno;
	if (mine && sigpending(&pending) == 0 &&
	    sigismember(&pending, SIGXFSZ))
		while (sigtimedwait(&xfsz, NULL, &now) < 0 && errno == EINTR)
			;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return n;
}

/*
 * Append one line with one write(), so that lines from threads and
 * processes sharing the file never interleave: the whole line or, when
 * the file has no room for it, nothing.  A part of a line that cannot be
 * taken back is ended by the next line written, which starts on a line of
 * its own.
 */
static kw_status write_line(struct kwi_audit *a, const char *buf, size_t len)
{
	struct iovec iov[2] = { { (void *)"\n", 1 }, { (void *)buf, len } };
	kw_status rc = KW_OK;
	size_t first, want;
	bool locked;
	ssize_t n;
	int e;

	pthread_mutex_lock(&a->lock);
	locked = file_lock(a, F_WRLCK);
	first = a->torn ? 0 : 1;
	want = len + 1 - first;
	n = writev_nosig(a->fd, iov + first, (int)(2 - first));
	e = errno;
	if (n == (ssize_t)want) {
		a->torn = false;
	} else if (n < 0) {
		rc = kwi_error(KW_ERR_IO, "keyway.audit: cannot write %s: %s",
			       a->path, strerror(e));
	} else {
		if (n > 0 && !(locked && unwrite(a, (size_t)n)))
			a->torn = true;
		rc = kwi_error(KW_ERR_IO,
			       "keyway.audit: cannot write %s: only %zd of %zu "
			       "bytes fit (is the file system full?)",
			       a->path, n, want);
	}
	if (locked)
		(void)file_lock(a, F_UNLCK);
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* ---- to syslog ---- */

static int log_connect_type(const struct kwi_audit *a, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	memcpy(sa.sun_path, a->socket, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* A datagram socket, or a stream socket where the daemon listens on one
 * (EPROTOTYPE), as syslog(3) does. */
static int log_connect(struct kwi_audit *a)
{
	int fd = log_connect_type(a, SOCK_DGRAM);

	a->stream = false;
	if (fd < 0 && errno == EPROTOTYPE) {
		fd = log_connect_type(a, SOCK_STREAM);
		a->stream = fd >= 0;
	}
	return fd;
}

/*
 * Send head, line and end (msg[0..2]): a datagram of the first two, or on
 * a stream socket all three, which it may take in parts.  0, or -1 and
 * errno.
 */
static int log_send(const struct kwi_audit *a, const struct iovec *msg)
{
	struct iovec iov[3];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;

	memcpy(iov, msg, sizeof(iov));
	if (!a->stream)
		return sendmsg(a->sock, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
	mh.msg_iovlen = 3;
	while (mh.msg_iovlen > 0) {
		n = sendmsg(a->sock, &mh, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		while (mh.msg_iovlen > 0 &&
		       (size_t)n >= mh.msg_iov->iov_len) {
			n -= (ssize_t)mh.msg_iov->iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen > 0) {
			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + n;
			mh.msg_iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/*
 * One message to the log socket: "<PRI>Mmm dd hh:mm:ss TAG[PID]: " and
 * the line, as syslog(3) writes it and as local daemons (rsyslog,
 * syslog-ng, systemd-journald) read it (RFC 3164), authpriv.info: one
 * datagram, or on a stream socket ended by a NUL byte, as syslog(3) ends
 * it there, so that the daemon can tell one message from the next.  A
 * daemon that restarted leaves the socket connected to nothing
 * (ECONNREFUSED, or EPIPE on a stream): connect again, once.
 */
static kw_status send_log(struct kwi_audit *a, const char *msg, size_t len)
{
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr",
					    "May", "Jun", "Jul", "Aug",
					    "Sep", "Oct", "Nov", "Dec" };
	char head[128];
	struct iovec iov[3];
	time_t now = time(NULL);
	struct tm tm;
	int n, e = 0;

	if (localtime_r(&now, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	n = snprintf(head, sizeof(head),
		     "<%d>%s %2d %02d:%02d:%02d %.32s[%ld]: ",
		     LOG_AUTHPRIV | LOG_INFO, months[(unsigned)tm.tm_mon % 12],
		     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     program_invocation_short_name[0] != '\0'
			     ? program_invocation_short_name
			     : "keyway",
		     (long)getpid());
	iov[0].iov_base = head;
	iov[0].iov_len = n > 0 && (size_t)n < sizeof(head) ? (size_t)n : 0;
	iov[1].iov_base = (void *)msg;
	iov[1].iov_len = len;
	iov[2].iov_base = (void *)"";
	iov[2].iov_len = 1;

	pthread_mutex_lock(&a->lock);
	if (a->sock < 0)
		a->sock = log_connect(a);
	if (a->sock < 0) {
		e = errno;
	} else if (log_send(a, iov) < 0) {
		e = errno;
		if (e == ECONNREFUSED || e == ENOTCONN || e == EPIPE ||
		    e == ECONNRESET) {
			close(a->sock);
			a->sock = log_connect(a);
			if (a->sock < 0 || log_send(a, iov) < 0)
				e = errno;
			else
				e = 0;
		}
	}
	pthread_mutex_unlock(&a->lock);
	if (e != 0)
		return kwi_error(KW_ERR_IO,
				 "keyway.audit: cannot send to the syslog "
				 "socket %s: %s",
				 a->socket, strerror(e));
	return KW_OK;
}

/* Write the finished object as one line, or send it to syslog. */
static kw_status emit(struct kwi_audit *a, struct line *l)
{
	kw_status rc;

	object_close(l);
	put_c(l, '\n');
	if (l->nomem) {
		rc = kwi_error(KW_ERR_NOMEM, "keyway.audit: out of memory");
		goto out;
	}
	if (a->sink == AUDIT_SYSLOG)
		rc = send_log(a, l->buf, l->len - 1);
	else
		rc = write_line(a, l->buf, l->len);
	if (rc != KW_OK && a->allow) {
		syslog(LOG_AUTHPRIV | LOG_ERR, "keyway: %s", kw_last_error());
		rc = KW_OK;
	}
out:
	line_release(l);
	return rc;
}

/* The first FP_LEN bytes of the HMAC of the key, in hex. */
static void fingerprint(const struct kwi_audit *a, const kw_secret *s,
			char out[2 * FP_LEN + 1])
{
	crypto_auth_hmacsha256_state st;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];

	memcpy(&st, a->fp_state, sizeof(st));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *)s->value,
				      s->len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_bin2hex(out, 2 * FP_LEN + 1, mac, FP_LEN);
	sodium_memzero(&st, sizeof(st));
	sodium_memzero(mac, sizeof(mac));
}

kw_status kwi_audit_resolve(struct kw_ctx *ctx, const struct kwi_query_in *in,
			    kw_status result, const kw_secret *s)
{
	struct kwi_audit *a = ctx->audit;
	char fp[2 * FP_LEN + 1];
	struct line l;

	if (a == NULL)
		return KW_OK;
	line_init(&l);
	object_open(&l, NULL);
	member_time(&l);
	member(&l, "event", "resolve", false);
	member(&l, "chain", in->chain, false);
	member(&l, "provider", in->provider, false);
	member(&l, "user", in->user, true);
	member(&l, "org", in->org, true);
	member(&l, "result", kw_status_str(result), false);
	if (s != NULL) {
		fingerprint(a, s, fp);
		member(&l, "backend", s->data, false);
		member(&l, "fingerprint", fp, false);
	}
	return emit(a, &l);
}

static const char *role_str(kw_role r)
{
	static const char *const names[] = { "none",  "viewer", "member",
					     "admin", "owner",  "sysadmin" };

	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r]
							       : "?";
}

kw_status kwi_audit_change(struct kw_ctx *ctx, const kw_actor *actor,
			   const char *op, const char *backend,
			   const kw_store_key *k, kw_status result)
{
	struct kwi_audit *a = ctx->audit;
	struct line l;

	if (a == NULL)
		return KW_OK;
	line_init(&l);
	object_open(&l, NULL);
	member_time(&l);
	member(&l, "event", op, false);
	object_open(&l, "actor");
	member(&l, "user", actor->user, true);
	member(&l, "org", actor->org, true);
	member(&l, "role", role_str(actor->role), false);
	object_close(&l);
	member(&l, "backend", backend, false);
	if (k != NULL) {
		member(&l, "scope", kw_scope_str(k->scope), false);
		member(&l, "owner", k->owner, true);
		member(&l, "provider", k->provider, false);
	}
	member(&l, "result", kw_status_str(result), false);
	return emit(a, &l);
}
