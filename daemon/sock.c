/*
 * sock.c - the sockets keywayd listens on: a Unix socket with its mode and
 * group (the main socket and the admin socket), and the TCP socket of
 * daemon.tcp, which dconf.c has checked to be loopback.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "keywayd.h"

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
		if (!S_ISSOCK(st.st_mode)) {
			kwd_log("socket %s: exists and is not a socket; remove "
				"it or choose another %s", path, what);
			return -1;
		}
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
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) {
		kwd_log("socket %s: cannot set its group: %s", path,
			strerror(errno));
		goto fail;
	}
	if (chmod(path, mode) != 0) {
		kwd_log("socket %s: cannot set its mode: %s", path,
			strerror(errno));
		goto fail;
	}
	if (listen(fd, 128) != 0) {
		kwd_log("socket %s: cannot listen: %s", path, strerror(errno));
		goto fail;
	}
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
		kwd_log("%s: cannot bind: %s", what, strerror(errno));
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
