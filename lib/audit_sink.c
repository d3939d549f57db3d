/*
 * audit_sink.c - where the audit trail's lines go.
 *
 * Lines go to the file with one write() on a descriptor opened O_APPEND,
 * so concurrent writers, threads or processes, do not interleave; a line
 * the file had no room for is taken back, so that every line in the file
 * stays one whole JSON object, under a lock on the whole file that every
 * writer takes, so that taking a line back never takes another process's
 * line with it.
 *
 * syslog(3) cannot say whether a message reached the daemon, and an event
 * that was lost must fail as on_failure says; so the syslog sink sends its
 * datagrams to the log socket itself, framed as syslog(3) frames them.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "audit_sink.h"
#include "error.h"
#include "fsutil.h"

bool kwi_audit_sink_init(struct kwi_audit_sink *s,
			 const struct kwi_audit_conf *c)
{
	s->conf = *c;
	s->fd = -1;
	s->sock = -1;
	s->stream = false;
	s->torn = false;
	return pthread_mutex_init(&s->lock, NULL) == 0;
}

void kwi_audit_sink_close(struct kwi_audit_sink *s)
{
	if (s->fd >= 0)
		close(s->fd);
	if (s->sock >= 0)
		close(s->sock);
	pthread_mutex_destroy(&s->lock);
}

/* ---- to a file ---- */

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
static kw_status audit_file_ok(const struct kwi_audit_conf *c,
			       const struct stat *st, struct kwi_diag *d)
{
	if (!S_ISREG(st->st_mode)) {
		kwi_diag(d, KW_ERR_PERM, c->file, c->line,
			 "keyway.audit: %s is %s, not a regular file", c->path,
			 file_type(st->st_mode));
		return KW_ERR_PERM;
	}
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		char euid_buf[KWI_EUID_BUF];

		kwi_diag(d, KW_ERR_PERM, c->file, c->line,
			 "keyway.audit: %s is owned by uid %u; it must belong "
			 "to root%s",
			 c->path, (unsigned)st->st_uid, kwi_or_euid(euid_buf));
		return KW_ERR_PERM;
	}
	if (st->st_mode & 077) {
		kwi_diag(d, KW_ERR_PERM, c->file, c->line,
			 "keyway.audit: %s is accessible by group or others "
			 "(mode %04o); it holds the audit trail: chmod 600 it",
			 c->path, (unsigned)(st->st_mode & 07777));
		return KW_ERR_PERM;
	}
	return KW_OK;
}

/* Why the audit file would not open, in words that say what to do. */
static kw_status open_failed(const struct kwi_audit_conf *c, int e,
			     struct kwi_diag *d)
{
	struct stat st;

	if (e == ELOOP) {
		kwi_diag(d, KW_ERR_PERM, c->file, c->line,
			 "keyway.audit: %s is a symbolic link; point the "
			 "setting at the file itself",
			 c->path);
		return KW_ERR_PERM;
	}
	/* A FIFO without a reader (ENXIO), a directory (EISDIR), ... */
	if (lstat(c->path, &st) == 0 && !S_ISREG(st.st_mode))
		return audit_file_ok(c, &st, d);
	kwi_diag(d, e == EACCES ? KW_ERR_PERM : KW_ERR_IO, c->file, c->line,
		 "keyway.audit: cannot open %s: %s", c->path, strerror(e));
	return e == EACCES ? KW_ERR_PERM : KW_ERR_IO;
}

static int log_connect(struct kwi_audit_sink *s);

/* kw_check(): whether the system logger takes datagrams (or a stream) on
 * the sink's socket, as every event will need; the connection is not
 * kept. */
static kw_status log_check(struct kwi_audit_sink *s, struct kwi_diag *d)
{
	const struct kwi_audit_conf *c = &s->conf;
	int fd = log_connect(s);

	if (fd < 0) {
		kwi_diag(d, KW_ERR_IO, c->file, c->line,
			 "keyway.audit: cannot send to the syslog socket %s: "
			 "%s; is the system logger running, or is socket the "
			 "path it listens on?",
			 c->socket, strerror(errno));
		return KW_ERR_IO;
	}
	close(fd);
	s->stream = false;
	return KW_OK;
}

kw_status kwi_audit_sink_open(struct kwi_audit_sink *s, bool checking,
			      struct kwi_diag *d)
{
	const struct kwi_audit_conf *c = &s->conf;
	struct stat st;

	if (c->to == KWI_AUDIT_SYSLOG)
		return checking && !c->allow ? log_check(s, d) : KW_OK;
	/* O_NONBLOCK: a FIFO put there must not hang the open.  kw_check()
	 * creates nothing: a missing file is its problem. */
	s->fd = open(c->path,
		     O_WRONLY | O_APPEND | (checking ? 0 : O_CREAT) |
			     O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK,
		     0600);
	if (s->fd < 0 && errno == ENOENT && checking) {
		kwi_diag(d, KW_ERR_CONFIG, c->file, c->line,
			 "keyway.audit: %s does not exist: create it with "
			 "keyway init",
			 c->path);
		return KW_ERR_CONFIG;
	}
	if (s->fd < 0)
		return open_failed(c, errno, d);
	if (fstat(s->fd, &st) != 0) {
		kwi_diag(d, KW_ERR_IO, c->file, c->line,
			 "keyway.audit: cannot open %s: %s", c->path,
			 strerror(errno));
		return KW_ERR_IO;
	}
	return audit_file_ok(c, &st, d);
}

/*
 * Take back the n bytes of a line that did not fit (a full disk, a file
 * size limit), if nothing was written after them.  Under s->lock and the
 * file lock (file_lock()), so the descriptor's offset is where this
 * thread's write ended and no other process appends between the fstat()
 * and the ftruncate(); another process's line after them is left alone.
 */
static bool unwrite(struct kwi_audit_sink *s, size_t n)
{
	off_t end = lseek(s->fd, 0, SEEK_CUR);
	struct stat st;

	return end >= (off_t)n && fstat(s->fd, &st) == 0 &&
	       st.st_size == end && ftruncate(s->fd, end - (off_t)n) == 0;
}

/*
 * Lock (F_WRLCK) or unlock (F_UNLCK) the whole file for this open file
 * description, waiting for another process's writer: every keyway process
 * appends under it, so a line can be taken back without taking another
 * process's line with it.  False when there is no such lock here (a file
 * system without open file description locks): the line is then not taken
 * back, and the next line starts on a line of its own.
 */
static bool file_lock(const struct kwi_audit_sink *s, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET };
	int r;

	do
		r = fcntl(s->fd, F_OFD_SETLKW, &fl);
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
static kw_status write_line(struct kwi_audit_sink *s, const char *buf,
			    size_t len)
{
	struct iovec iov[2] = { { (void *)"\n", 1 }, { (void *)buf, len } };
	kw_status rc = KW_OK;
	size_t first, want;
	bool locked;
	ssize_t n;
	int e;

	pthread_mutex_lock(&s->lock);
	locked = file_lock(s, F_WRLCK);
	first = s->torn ? 0 : 1;
	want = len + 1 - first;
	n = writev_nosig(s->fd, iov + first, (int)(2 - first));
	e = errno;
	if (n == (ssize_t)want) {
		s->torn = false;
	} else if (n < 0) {
		rc = kwi_error(KW_ERR_IO, "keyway.audit: cannot write %s: %s",
			       s->conf.path, strerror(e));
	} else {
		if (n > 0 && !(locked && unwrite(s, (size_t)n)))
			s->torn = true;
		rc = kwi_error(KW_ERR_IO,
			       "keyway.audit: cannot write %s: only %zd of %zu "
			       "bytes fit (is the file system full?)",
			       s->conf.path, n, want);
	}
	if (locked)
		(void)file_lock(s, F_UNLCK);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* ---- to syslog ---- */

static int log_connect_type(const struct kwi_audit_sink *s, int type)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, e;

	memcpy(sa.sun_path, s->conf.socket, sizeof(sa.sun_path));
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
static int log_connect(struct kwi_audit_sink *s)
{
	int fd = log_connect_type(s, SOCK_DGRAM);

	s->stream = false;
	if (fd < 0 && errno == EPROTOTYPE) {
		fd = log_connect_type(s, SOCK_STREAM);
		s->stream = fd >= 0;
	}
	return fd;
}

/*
 * Send head, line and end (msg[0..2]): a datagram of the first two, or on
 * a stream socket all three, which it may take in parts.  0, or -1 and
 * errno.
 */
static int log_send(const struct kwi_audit_sink *s, const struct iovec *msg)
{
	struct iovec iov[3];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
	ssize_t n;

	memcpy(iov, msg, sizeof(iov));
	if (!s->stream)
		return sendmsg(s->sock, &mh, MSG_NOSIGNAL) < 0 ? -1 : 0;
	mh.msg_iovlen = 3;
	while (mh.msg_iovlen > 0) {
		n = sendmsg(s->sock, &mh, MSG_NOSIGNAL);
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

/* "<PRI>Mmm dd hh:mm:ss TAG[PID]: " into head; its length, 0 when it
 * does not fit. */
static size_t log_head(char *head, size_t size)
{
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr",
					    "May", "Jun", "Jul", "Aug",
					    "Sep", "Oct", "Nov", "Dec" };
	time_t now = time(NULL);
	struct tm tm;
	int n;

	if (localtime_r(&now, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	n = snprintf(head, size, "<%d>%s %2d %02d:%02d:%02d %.32s[%ld]: ",
		     LOG_AUTHPRIV | LOG_INFO, months[(unsigned)tm.tm_mon % 12],
		     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     program_invocation_short_name[0] != '\0'
			     ? program_invocation_short_name
			     : "keyway",
		     (long)getpid());
	return n > 0 && (size_t)n < size ? (size_t)n : 0;
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
static kw_status send_log(struct kwi_audit_sink *s, const char *msg,
			  size_t len)
{
	char head[128];
	struct iovec iov[3];
	int e = 0;

	iov[0].iov_base = head;
	iov[0].iov_len = log_head(head, sizeof(head));
	iov[1].iov_base = (void *)msg;
	iov[1].iov_len = len;
	iov[2].iov_base = (void *)"";
	iov[2].iov_len = 1;

	pthread_mutex_lock(&s->lock);
	if (s->sock < 0)
		s->sock = log_connect(s);
	if (s->sock < 0) {
		e = errno;
	} else if (log_send(s, iov) < 0) {
		e = errno;
		if (e == ECONNREFUSED || e == ENOTCONN || e == EPIPE ||
		    e == ECONNRESET) {
			close(s->sock);
			s->sock = log_connect(s);
			if (s->sock < 0 || log_send(s, iov) < 0)
				e = errno;
			else
				e = 0;
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (e != 0)
		return kwi_error(KW_ERR_IO,
				 "keyway.audit: cannot send to the syslog "
				 "socket %s: %s",
				 s->conf.socket, strerror(e));
	return KW_OK;
}

kw_status kwi_audit_sink_write(struct kwi_audit_sink *s, const char *line,
			       size_t len)
{
	/* A syslog message has no line end. */
	if (s->conf.to == KWI_AUDIT_SYSLOG)
		return send_log(s, line, len - 1);
	return write_line(s, line, len);
}
