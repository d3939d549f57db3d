/*
 * sd.c - the two protocols keywayd speaks with systemd, each a few lines,
 * so that libsystemd is not needed:
 *
 * - socket activation (sd_listen_fds(3)): the service manager binds the
 *   socket (keyway.socket) and starts keywayd with it open from
 *   descriptor 3 on, $LISTEN_FDS of them, $LISTEN_PID naming the process
 *   they are for and $LISTEN_FDNAMES their names, separated by ':';
 * - readiness (sd_notify(3)): one datagram of "VAR=value" lines to the
 *   Unix socket $NOTIFY_SOCKET names (a path, or '@' for an abstract
 *   name), so that Type=notify knows when keywayd serves, reloads, stops.
 *
 * Everything here runs on the main thread.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "keywayd.h"
#include "sd.h"

#define FIRST_FD 3 /* SD_LISTEN_FDS_START */
#define MAX_FDS 64

static int nfds;
/* $LISTEN_FDNAMES, split in place; not on the heap, so that nothing is
 * left to free at exit. */
static char names_buf[4096];
static char *fd_names[MAX_FDS];

static struct sockaddr_un notify_addr;
static socklen_t notify_len;
static int notify_fd = -1;

/* A decimal number, all of s. */
static bool number(const char *s, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0;
}

static bool listen_init(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	unsigned long p, n;
	char *tok, *save;
	int i;

	if (pid == NULL || fds == NULL)
		return true;
	if (!number(pid, &p)) {
		kwd_log("socket activation: $LISTEN_PID (%.20s) is not a "
			"process id", pid);
		return false;
	}
	if (p != (unsigned long)getpid())
		return true; /* for another process: not ours to take */
	if (!number(fds, &n)) {
		kwd_log("socket activation: $LISTEN_FDS (%.20s) is not a "
			"number", fds);
		return false;
	}
	if (n > MAX_FDS) {
		kwd_log("socket activation: $LISTEN_FDS is %lu; keywayd takes "
			"at most %d sockets", n, MAX_FDS);
		return false;
	}
	for (i = 0; i < (int)n; i++) {
		int fd = FIRST_FD + i, fl = fcntl(fd, F_GETFD);

		if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) != 0) {
			kwd_log("socket activation: descriptor %d of $LISTEN_FDS "
				"(%lu) is not open", fd, n);
			return false;
		}
	}
	nfds = (int)n;
	if (names == NULL || nfds == 0)
		return true;
	if (strlen(names) >= sizeof(names_buf)) {
		kwd_log("socket activation: $LISTEN_FDNAMES is longer than %zu "
			"bytes", sizeof(names_buf) - 1);
		return false;
	}
	strcpy(names_buf, names);
	/* Empty names are names too ("a::b"): no strtok(). */
	for (i = 0, tok = names_buf; tok != NULL; i++, tok = save) {
		save = strchr(tok, ':');
		if (save != NULL)
			*save++ = '\0';
		if (i < nfds)
			fd_names[i] = tok;
	}
	if (i != nfds) {
		kwd_log("socket activation: $LISTEN_FDNAMES has %d names for "
			"%d sockets", i, nfds);
		return false;
	}
	return true;
}

static void notify_init(void)
{
	const char *s = getenv("NOTIFY_SOCKET");
	size_t len;

	if (s == NULL || s[0] == '\0')
		return;
	len = strlen(s);
	if ((s[0] != '/' && s[0] != '@') || len >= sizeof(notify_addr.sun_path)) {
		kwd_log("$NOTIFY_SOCKET (%.108s) is not a Unix socket's path or "
			"@name: nothing is told to the service manager", s);
		return;
	}
	notify_addr.sun_family = AF_UNIX;
	memcpy(notify_addr.sun_path, s, len);
	if (s[0] == '@')
		notify_addr.sun_path[0] = '\0'; /* abstract: no NUL at the end */
	else
		len++;
	notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (notify_fd < 0)
		kwd_log("$NOTIFY_SOCKET: socket: %s", strerror(errno));
}

bool kwd_sd_init(void)
{
	bool ok = listen_init();

	notify_init();
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	unsetenv("NOTIFY_SOCKET");
	return ok;
}

int kwd_sd_passed(void)
{
	return nfds;
}

/* Does fd i answer to name? */
static bool named(int i, const char *name)
{
	const char *n = fd_names[i];
	size_t len = strlen(name);

	if (n == NULL || n[0] == '\0' || strcmp(n, "unknown") == 0)
		return nfds == 1 && strcmp(name, "keyway") == 0;
	return strcmp(n, name) == 0 ||
	       (strncmp(n, name, len) == 0 && strcmp(n + len, ".socket") == 0);
}

int kwd_sd_socket(const char *name, char *path, size_t pathlen)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	int fd, v[3], i;
	socklen_t vl;
	static const int opts[3] = { SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN };
	static const int want[3] = { AF_UNIX, SOCK_STREAM, 1 };

	for (i = 0; i < nfds && !named(i, name); i++)
		;
	if (i == nfds)
		return -1;
	fd = FIRST_FD + i;
	for (int k = 0; k < 3; k++) {
		vl = sizeof(v[k]);
		if (getsockopt(fd, SOL_SOCKET, opts[k], &v[k], &vl) != 0 ||
		    v[k] != want[k]) {
			kwd_log("socket activation: descriptor %d (\"%s\") is not "
				"a listening Unix stream socket; give the socket "
				"unit ListenStream=/run/keyway/keyway.sock",
				fd, name);
			return -2;
		}
	}
	memset(&sa, 0, sizeof(sa));
	if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		kwd_log("socket activation: descriptor %d: %s", fd,
			strerror(errno));
		return -2;
	}
	len -= (socklen_t)offsetof(struct sockaddr_un, sun_path);
	if (len > 0 && sa.sun_path[0] == '\0')
		snprintf(path, pathlen, "@%.*s", (int)len - 1, sa.sun_path + 1);
	else
		snprintf(path, pathlen, "%.*s", (int)strnlen(sa.sun_path, len),
			 sa.sun_path);
	return fd;
}

/* Whether a and b are the same address and port. */
static bool same_inet(const struct sockaddr_storage *a,
		      const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port &&
		       x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr,
			      sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

/* addr:port, as daemon.tcp writes it. */
static void inet_str(const struct sockaddr_storage *sa, char *buf, size_t n)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(buf, n, "%s:%u", host, port);
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(buf, n, "[%s]:%u", host, port);
	} else {
		snprintf(buf, n, "an address that is not TCP");
	}
}

bool kwd_sd_has(const char *name)
{
	for (int i = 0; i < nfds; i++)
		if (named(i, name))
			return true;
	return false;
}

int kwd_sd_tcp_socket(const char *name, const struct sockaddr_storage *want)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa), vl;
	char got_s[64], want_s[64];
	int fd, type = 0, listening = 0, i;

	for (i = 0; i < nfds && !named(i, name); i++)
		;
	if (i == nfds)
		return -1;
	fd = FIRST_FD + i;
	memset(&sa, 0, sizeof(sa));
	vl = sizeof(type);
	(void)getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &vl);
	vl = sizeof(listening);
	(void)getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &vl);
	if (type != SOCK_STREAM || listening != 1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
	    (sa.ss_family != AF_INET && sa.ss_family != AF_INET6)) {
		kwd_log("socket activation: descriptor %d (\"%s\") is not a "
			"listening TCP socket; give its socket unit "
			"ListenStream= with daemon.tcp's address", fd, name);
		return -2;
	}
	if (!same_inet(&sa, want)) {
		inet_str(&sa, got_s, sizeof(got_s));
		inet_str(want, want_s, sizeof(want_s));
		kwd_log("socket activation: descriptor %d (\"%s\") listens on "
			"%s, not on daemon.tcp's %s; make ListenStream= and "
			"daemon.tcp the same", fd, name, got_s, want_s);
		return -2;
	}
	return fd;
}

void kwd_sd_notify(const char *fmt, ...)
{
	static bool said;
	char msg[1024];
	va_list ap;
	int n;

	if (notify_fd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = (int)strlen(msg);
	if (sendto(notify_fd, msg, (size_t)n, MSG_NOSIGNAL,
		   (struct sockaddr *)&notify_addr, notify_len) < 0 && !said) {
		said = true;
		kwd_log("$NOTIFY_SOCKET: cannot tell the service manager: %s",
			strerror(errno));
	}
}

void kwd_sd_reloading(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	kwd_sd_notify("RELOADING=1\nMONOTONIC_USEC=%llu",
		      (unsigned long long)now.tv_sec * 1000000ULL +
			      (unsigned long long)now.tv_nsec / 1000ULL);
}
