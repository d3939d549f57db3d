/*
 * tcp.c - keywayd on TCP, only when daemon.tcp asks for it: on a loopback
 * address only, and only for requests that carry the token of
 * daemon.tcp_token_file.  A TCP caller has no uid: it may use the chains
 * of daemon.tcp_chains, and its leases are those of every TCP caller
 * together (KWD_TCP_UID), as is its rate, taken before its token is
 * looked at.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "keywayd.h"

#define TOKEN_MAX 4096
#define TOKEN_MIN 16

bool kwd_tcp_parse(const char *s, struct sockaddr_storage *sa,
		   socklen_t *len, char *why, size_t whysz)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
	char host[64];
	const char *port;
	unsigned long p;
	char *end;
	size_t n;

	memset(sa, 0, sizeof(*sa));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			goto syntax;
		n = (size_t)(close - s - 1);
		port = close + 2;
		if (n >= sizeof(host))
			goto syntax;
		memcpy(host, s + 1, n);
		host[n] = '\0';
		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
			goto syntax;
		in6->sin6_family = AF_INET6;
		*len = sizeof(*in6);
	} else {
		const char *colon = strrchr(s, ':');

		if (!colon)
			goto syntax;
		n = (size_t)(colon - s);
		port = colon + 1;
		if (n >= sizeof(host))
			goto syntax;
		memcpy(host, s, n);
		host[n] = '\0';
		if (inet_pton(AF_INET, host, &in4->sin_addr) != 1)
			goto syntax;
		in4->sin_family = AF_INET;
		*len = sizeof(*in4);
	}
	errno = 0;
	p = strtoul(port, &end, 10);
	if (errno || !*port || *end || p < 1 || p > 65535)
		goto syntax;
	if (sa->ss_family == AF_INET) {
		in4->sin_port = htons((uint16_t)p);
		if ((ntohl(in4->sin_addr.s_addr) >> 24) != 127)
			goto not_loopback;
	} else {
		in6->sin6_port = htons((uint16_t)p);
		if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			goto not_loopback;
	}
	return true;
syntax:
	snprintf(why, whysz, "\"%.80s\" is not ADDRESS:PORT with a numeric "
		 "address, e.g. \"127.0.0.1:8377\" or \"[::1]:8377\"", s);
	return false;
not_loopback:
	snprintf(why, whysz, "%.80s is not a loopback address; keywayd "
		 "serves TCP only on 127.0.0.0/8 or [::1] (use the Unix "
		 "socket, or a proxy with TLS, for other hosts)", s);
	return false;
}

bool kwd_tcp_read_token(const char *path, char **tok, size_t *len,
			char *why, size_t whysz)
{
	char *buf = NULL;
	struct stat st;
	size_t n = 0;
	ssize_t r;
	int fd;

	*tok = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY |
		  O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			snprintf(why, whysz, "%s is a symbolic link; point the "
				 "setting at the file itself", path);
		else
			snprintf(why, whysz, "%s: %s", path, strerror(errno));
		return false;
	}
	/* As libkeyway checks a file of secrets: on the open descriptor. */
	if (fstat(fd, &st) != 0) {
		snprintf(why, whysz, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whysz, "%s is not a regular file", path);
		goto fail;
	}
	if (st.st_uid != 0 && st.st_uid != geteuid()) {
		snprintf(why, whysz, "%s is owned by uid %u; it must belong to "
			 "root or uid %u", path, (unsigned)st.st_uid,
			 (unsigned)geteuid());
		goto fail;
	}
	if (st.st_mode & 077) {
		snprintf(why, whysz, "%s is accessible by group or others "
			 "(mode %04o); it holds secrets: chmod 600 it", path,
			 (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	buf = malloc(TOKEN_MAX + 1);
	if (!buf) {
		snprintf(why, whysz, "out of memory");
		goto fail;
	}
	while (n < TOKEN_MAX + 1 &&
	       (r = read(fd, buf + n, TOKEN_MAX + 1 - n)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			snprintf(why, whysz, "%s: %s", path, strerror(errno));
			goto fail;
		}
		n += (size_t)r;
	}
	if (n > TOKEN_MAX) {
		snprintf(why, whysz, "%s is longer than %d bytes; it must hold "
			 "the token alone", path, TOKEN_MAX);
		goto fail;
	}
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)buf[i];

		if (ch <= 0x20 || ch >= 0x7f) {
			snprintf(why, whysz, "%s: the token holds a blank or a "
				 "character that is not printable ASCII (at "
				 "byte %zu); it goes into an HTTP header", path,
				 i + 1);
			goto fail;
		}
	}
	if (n < TOKEN_MIN) {
		snprintf(why, whysz, "%s: the token is shorter than %d "
			 "characters; make one with `openssl rand -hex 32`",
			 path, TOKEN_MIN);
		goto fail;
	}
	close(fd);
	buf[n] = '\0';
	*tok = buf;
	*len = n;
	return true;
fail:
	if (buf) {
		explicit_bzero(buf, TOKEN_MAX + 1);
		free(buf);
	}
	close(fd);
	return false;
}

static void peer(struct MHD_Connection *c, bool with_port, char *buf,
		 size_t size)
{
	const union MHD_ConnectionInfo *ci;
	char addr[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	bool v6 = false;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;

		if (sa->sa_family == AF_INET) {
			const struct sockaddr_in *in = (const void *)sa;

			inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
			port = ntohs(in->sin_port);
		} else if (sa->sa_family == AF_INET6) {
			const struct sockaddr_in6 *in = (const void *)sa;

			inet_ntop(AF_INET6, &in->sin6_addr, addr, sizeof(addr));
			port = ntohs(in->sin6_port);
			v6 = true;
		}
	}
	if (with_port)
		snprintf(buf, size, v6 ? "tcp [%s]:%u" : "tcp %s:%u", addr,
			 port);
	else
		snprintf(buf, size, v6 ? "tcp [%s]" : "tcp %s", addr);
}

void kwd_tcp_peer(struct MHD_Connection *c, char *buf, size_t size)
{
	peer(c, true, buf, size);
}

void kwd_tcp_key(struct MHD_Connection *c, char *buf, size_t size)
{
	/* Not the peer's address: every 127.x.y.z is loopback, and any
	 * local user may bind one, so a key per address would give each
	 * caller as many rates as it likes.  TCP callers share one. */
	(void)c;
	snprintf(buf, size, "tcp");
}

/*
 * Whether given (n bytes) is the token, in a time that depends on the
 * token's length only: every byte of the token is compared, whatever was
 * given.
 */
static bool same_token(const char *given, size_t n, const char *tok,
		       size_t len)
{
	/* No token (TCP dropped by a reload) matches nothing. */
	if (tok == NULL || len == 0 || n != len)
		return false;
	return sodium_memcmp(given, tok, len) == 0;
}

/* What a request asked, for the audit trail: the endpoint's name, or
 * "request" for a path that is none (it is the peer's to choose). */
static const char *endpoint(const char *url)
{
	static const char *const names[] = { "resolve", "report", "explain",
					     "health", NULL };

	if (strncmp(url, "/v1/", 4) == 0)
		for (const char *const *n = names; *n; n++)
			if (strcmp(url + 4, *n) == 0)
				return *n;
	return "request";
}

bool kwd_tcp_admit(struct MHD_Connection *c, struct kwd_gen *g,
		   const char *url, enum MHD_Result *ret)
{
	const char *auth, *reason;
	char who[96], key[KWD_KEY_MAX], msg[256], line[384];
	struct kwd_refusal r = { 0 };

	auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
					   MHD_HTTP_HEADER_AUTHORIZATION);
	if (!auth) {
		reason = "no Authorization header";
	} else if (strncasecmp(auth, "Bearer ", 7) != 0) {
		reason = "an Authorization header that is not Bearer";
	} else {
		const char *t = auth + 7;

		while (*t == ' ')
			t++;
		if (same_token(t, strlen(t), g->conf.tcp_token,
			       g->conf.tcp_token_len))
			return true;
		reason = "a wrong token";
	}
	/* A refusal takes from the caller's rate as a request served. */
	kwd_tcp_key(c, key, sizeof(key));
	if (!kwd_rate_take(key, g->conf.rate_limit)) {
		*ret = kwd_send_error(c, MHD_HTTP_TOO_MANY_REQUESTS, "limited",
				      "%s is over daemon.rate_limit (%u "
				      "requests a second)", key,
				      g->conf.rate_limit);
		return false;
	}
	kwd_tcp_peer(c, who, sizeof(who));
	snprintf(line, sizeof(line), "audit: refused %s to %s: %s",
		 endpoint(url), who, reason);
	r.op = endpoint(url);
	r.caller = who;
	r.uid = -1;
	r.reason = reason;
	r.line = line;
	kwd_refused(g, key, &r);
	snprintf(msg, sizeof(msg), "TCP requests must carry Authorization: "
		 "Bearer and the token of daemon.tcp_token_file (got %s)",
		 reason);
	*ret = kwd_send_json(c, MHD_HTTP_UNAUTHORIZED,
			     json_pack("{s:s, s:s}", "error", msg, "status",
				       "refused"),
			     MHD_HTTP_HEADER_WWW_AUTHENTICATE,
			     "Bearer realm=\"keywayd\"");
	return false;
}
