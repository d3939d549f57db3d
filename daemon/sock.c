/*
 * sock.c - the sockets keywayd listens on: a Unix socket with its mode and
 * group (the main socket and the admin socket), and the TCP socket of
 * daemon.tcp, which dconf.c has checked to be loopback.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "keywayd.h"

/*
 * The sockets this process bound, by the inode of their path: at exit it
 * removes a path only while it is still its own socket, not one another
 * keywayd bound there since.  Used from the main thread only.
 */
static struct bound {
	dev_t dev;
	ino_t ino;
} bound[4];
static size_t nbound;

static void remember(const char *path)
{
	struct stat st;

	if (nbound < sizeof(bound) / sizeof(bound[0]) &&
	    lstat(path, &st) == 0) {
		bound[nbound].dev = st.st_dev;
		bound[nbound].ino = st.st_ino;
		nbound++;
	}
}

void kwd_unlink_unix(const char *path)
{
	struct stat st;

	if (path == NULL || lstat(path, &st) != 0)
		return;
	for (size_t i = 0; i < nbound; i++)
		if (bound[i].dev == st.st_dev && bound[i].ino == st.st_ino) {
			unlink(path);
			return;
		}
}

/*
 * fchmodat(AT_SYMLINK_NOFOLLOW) is not everywhere (glibc before 2.32; a
 * process without /proc): chmod() path if it is still the socket bound
 * there (st, taken after the bind).  errno is kept on failure.
 */
static bool chmod_bound(const char *path, mode_t mode, const struct stat *st)
{
	struct stat now;
	int e = errno;

	if (e != ENOTSUP && e != EOPNOTSUPP && e != ENOSYS)
		return false;
	if (lstat(path, &now) != 0 || !S_ISSOCK(now.st_mode) ||
	    now.st_dev != st->st_dev || now.st_ino != st->st_ino) {
		errno = e;
		return false;
	}
	return chmod(path, mode) == 0;
}

/*
 * Whether something listens on the socket at path: a socket left by a
 * keywayd that is gone refuses the connection, one that is served takes
 * it (or, its backlog full, would).  On another error, *err is errno.
 */
static bool served(const char *path, const struct sockaddr_un *sa, int *err)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
			0);
	bool yes;

	*err = 0;
	if (fd < 0) {
		*err = errno;
		return false;
	}
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 ||
	    errno == EAGAIN || errno == EINPROGRESS) {
		yes = true;
	} else {
		yes = false;
		if (errno != ECONNREFUSED && errno != ENOENT)
			*err = errno;
	}
	close(fd);
	return yes;
}

int kwd_listen_unix(const char *path, mode_t mode, gid_t gid,
		    const char *what)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		kwd_log("socket %s: the path is longer than %zu bytes; choose "
			"a shorter one", path, sizeof(sa.sun_path) - 1);
		return -1;
	}
	strcpy(sa.sun_path, path);
	if (lstat(path, &st) == 0) {
		int err;

		if (!S_ISSOCK(st.st_mode)) {
			kwd_log("socket %s: exists and is not a socket; remove "
				"it or choose another %s", path, what);
			return -1;
		}
		if (served(path, &sa, &err)) {
			kwd_log("socket %s: another process is serving it (a "
				"keywayd already running?); stop it, or choose "
				"another %s", path, what);
			return -1;
		}
		if (err != 0) {
			kwd_log("socket %s: cannot tell whether another process "
				"serves it: %s", path, strerror(err));
			return -1;
		}
		/* Left by a keywayd that is gone. */
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		kwd_log("socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r != 0) {
		kwd_log("socket %s: cannot bind: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (lstat(path, &st) != 0) {
		kwd_log("socket %s: %s", path, strerror(errno));
		goto fail;
	}
	/* Neither follows a symbolic link put at path since the bind: the
	 * socket's directory may be writable by others. */
	if (gid != (gid_t)-1 &&
	    fchownat(AT_FDCWD, path, (uid_t)-1, gid, AT_SYMLINK_NOFOLLOW) != 0) {
		kwd_log("socket %s: cannot set its group: %s", path,
			strerror(errno));
		goto fail;
	}
	if (fchmodat(AT_FDCWD, path, mode, AT_SYMLINK_NOFOLLOW) != 0 &&
	    !chmod_bound(path, mode, &st)) {
		kwd_log("socket %s: cannot set its mode: %s", path,
			strerror(errno));
		goto fail;
	}
	if (listen(fd, 128) != 0) {
		kwd_log("socket %s: cannot listen: %s", path, strerror(errno));
		goto fail;
	}
	remember(path);
	return fd;
fail:
	unlink(path);
	close(fd);
	return -1;
}

int kwd_listen_tcp(const struct sockaddr_storage *sa, socklen_t len,
		   const char *what)
{
	int fd, one = 1;

	fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		kwd_log("%s: socket: %s", what, strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)sa, len) != 0) {
		/* Any local user may hold an unprivileged port first. */
		kwd_log("%s: cannot bind: %s%s", what, strerror(errno),
			errno == EADDRINUSE ? " (another process holds the "
			"port; have systemd hold it for keywayd with "
			"keyway-tcp.socket, see keywayd(8))" : "");
		close(fd);
		return -1;
	}
	if (listen(fd, 128) != 0) {
		kwd_log("%s: cannot listen: %s", what, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}
