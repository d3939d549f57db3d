/*
 * redis.c - the redis module: keyway's quota ledger kept in Redis, shared
 * by every host whose keyway.ledger names the same Redis.
 *
 *     ledger: { module = "redis"; address = "10.0.0.5:6379";
 *               password_file = "/etc/keyway/redis.pass"; };
 *
 * A charge and a refund are each one Lua script run by Redis (ledger.c):
 * the check of every counter, their increments and the usage row are one
 * atomic step for every thread of every host, so N hosts admit exactly
 * `limit` per window.  This file reads the settings and opens and closes
 * the ledger; conn.c holds the connections, a pool the threads share.
 *
 * Opening connects to nothing: a host whose Redis is down still opens its
 * keyway.conf, and the entries without a quota keep working.  The first
 * charge connects.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf(), strndup() */
#endif
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyway/module.h>

#include "redis.h"

/* The longest password a password_file may hold. */
#define RD_PASSWORD_MAX 4096

static const kw_setting_spec rd_settings[] = {
	{ "address", KW_SETTING_STRING, KW_SETTING_REQUIRED },
	{ "password_file", KW_SETTING_PATH, 0 },
	{ "username", KW_SETTING_STRING, 0 },
	{ "db", KW_SETTING_INT, 0 },
	{ "prefix", KW_SETTING_STRING, 0 },
	{ "connect_timeout_ms", KW_SETTING_INT, 0 },
	{ "timeout_ms", KW_SETTING_INT, 0 },
	{ "usage_days", KW_SETTING_INT, 0 },
	{ NULL, 0, 0 }
};

static void rd_close(void *state)
{
	struct rd_state *st = state;

	if (st == NULL)
		return;
	rd_conn_free_all(st);
	if (st->lock_made)
		pthread_mutex_destroy(&st->lock);
	if (st->password != NULL)
		st->host->secure_free(st->password, st->password_size);
	free(st->address);
	free(st->hostname);
	free(st->socket_path);
	free(st->username);
	free(st->password_file);
	free(st->prefix);
	free(st);
}

/*
 * address: "HOST:PORT", "[IPV6]:PORT", "HOST" (port 6379), or the absolute
 * path of a Unix socket.
 */
static kw_status rd_parse_address(struct rd_state *st, kw_instance *inst,
				  const char *a)
{
	const kw_host *h = st->host;
	const char *host_end, *port = NULL;
	char *end;
	long p = 6379;

	if (a[0] == '/') {
		st->socket_path = strdup(a);
		return st->socket_path != NULL ? KW_OK : KW_ERR_NOMEM;
	}
	if (a[0] == '[') {
		host_end = strchr(a, ']');
		if (host_end == NULL || host_end == a + 1 ||
		    (host_end[1] != '\0' && host_end[1] != ':'))
			goto bad;
		if (host_end[1] == ':')
			port = host_end + 2;
		st->hostname = strndup(a + 1, (size_t)(host_end - a - 1));
	} else {
		host_end = strchr(a, ':');
		if (host_end != NULL && strchr(host_end + 1, ':') != NULL) {
			h->error(inst, "address",
				 "address \"%s\": write an IPv6 address in "
				 "brackets, as \"[::1]:6379\"",
				 a);
			return KW_ERR_CONFIG;
		}
		if (host_end == NULL)
			host_end = a + strlen(a);
		else
			port = host_end + 1;
		if (host_end == a)
			goto bad;
		st->hostname = strndup(a, (size_t)(host_end - a));
	}
	if (st->hostname == NULL)
		return KW_ERR_NOMEM;
	if (port != NULL) {
		errno = 0;
		p = strtol(port, &end, 10);
		if (port[0] < '0' || port[0] > '9' || *end != '\0' ||
		    errno != 0 || p < 1 || p > 65535) {
			h->error(inst, "address",
				 "address \"%s\": the port must be a number "
				 "from 1 to 65535",
				 a);
			return KW_ERR_CONFIG;
		}
	}
	st->port = (int)p;
	return KW_OK;
bad:
	h->error(inst, "address",
		 "address \"%s\" is not HOST:PORT, [IPV6]:PORT or the absolute "
		 "path of a Unix socket",
		 a);
	return KW_ERR_CONFIG;
}

/*
 * The password: the whole of password_file, one trailing newline left
 * out, in guarded memory.  The file is opened as a private key is.
 */
static kw_status rd_read_password(struct rd_state *st, kw_instance *inst,
				  const char *path)
{
	const kw_host *h = st->host;
	kw_status rc;
	size_t len = 0;
	ssize_t n;
	char *buf;
	int fd = -1;

	st->password_file = strdup(path);
	if (st->password_file == NULL)
		return KW_ERR_NOMEM;
	rc = h->open_private(inst, "password_file", path, &fd);
	if (rc == KW_ERR_NOTFOUND) {
		h->error(inst, "password_file",
			 "%s does not exist: write Redis's password into it "
			 "(mode 0600), or remove password_file",
			 path);
		return KW_ERR_CONFIG;
	}
	if (rc != KW_OK)
		return rc;
	st->password_size = RD_PASSWORD_MAX + 2;
	buf = h->secure_alloc(st->password_size);
	if (buf == NULL) {
		close(fd);
		return KW_ERR_NOMEM;
	}
	st->password = buf;
	while (len < RD_PASSWORD_MAX + 1) {
		n = read(fd, buf + len, RD_PASSWORD_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			h->error(inst, "password_file", "cannot read %s: %s",
				 path, strerror(errno));
			close(fd);
			return KW_ERR_IO;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len > RD_PASSWORD_MAX) {
		h->error(inst, "password_file",
			 "%s holds more than %d bytes: it must hold the "
			 "password alone",
			 path, RD_PASSWORD_MAX);
		return KW_ERR_CONFIG;
	}
	if (len == 0 || memchr(buf, '\n', len) != NULL ||
	    memchr(buf, '\0', len) != NULL) {
		h->error(inst, "password_file",
			 "%s must hold the password alone, on one line",
			 path);
		return KW_ERR_CONFIG;
	}
	buf[len] = '\0';
	st->password_len = len;
	return KW_OK;
}

/* An integer setting within [lo, hi], or dflt when absent. */
static kw_status rd_int(struct rd_state *st, kw_instance *inst,
			const char *name, int64_t lo, int64_t hi, int64_t dflt,
			int64_t *out)
{
	kw_status rc = st->host->setting_int(inst, name, out);

	if (rc == KW_ERR_NOTFOUND) {
		*out = dflt;
		return KW_OK;
	}
	if (rc != KW_OK)
		return rc;
	if (*out < lo || *out > hi) {
		st->host->error(inst, name,
				"%s must be from %lld to %lld, not %lld", name,
				(long long)lo, (long long)hi,
				(long long)*out);
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

/* A string setting, copied; *out NULL when absent. */
static kw_status rd_string(struct rd_state *st, kw_instance *inst,
			   const char *name, char **out)
{
	const char *v;
	kw_status rc = st->host->setting_string(inst, name, &v);

	*out = NULL;
	if (rc == KW_ERR_NOTFOUND)
		return KW_OK;
	if (rc != KW_OK)
		return rc;
	*out = strdup(v);
	return *out != NULL ? KW_OK : KW_ERR_NOMEM;
}

static kw_status rd_settings_read(struct rd_state *st, kw_instance *inst)
{
	const kw_host *h = st->host;
	const char *path = NULL;
	kw_status rc;

	rc = rd_string(st, inst, "address", &st->address);
	if (rc == KW_OK && (st->address == NULL || st->address[0] == '\0')) {
		h->error(inst, "address",
			 "address is empty: write HOST:PORT, [IPV6]:PORT or "
			 "the path of a Unix socket");
		return KW_ERR_CONFIG;
	}
	if (rc == KW_OK)
		rc = rd_parse_address(st, inst, st->address);
	if (rc == KW_OK)
		rc = rd_string(st, inst, "username", &st->username);
	if (rc == KW_OK && st->username != NULL &&
	    (st->username[0] == '\0' || strpbrk(st->username, " \t\r\n"))) {
		h->error(inst, "username",
			 "username must be a Redis ACL user name: not empty, "
			 "no spaces");
		return KW_ERR_CONFIG;
	}
	if (rc == KW_OK)
		rc = rd_string(st, inst, "prefix", &st->prefix);
	if (rc == KW_OK && st->prefix == NULL) {
		st->prefix = strdup("keyway:");
		if (st->prefix == NULL)
			rc = KW_ERR_NOMEM;
	}
	if (rc == KW_OK)
		rc = rd_int(st, inst, "db", 0, INT_MAX, 0, &st->db);
	if (rc == KW_OK)
		rc = rd_int(st, inst, "connect_timeout_ms", 1, 600000, 1000,
			    &st->connect_timeout_ms);
	if (rc == KW_OK)
		rc = rd_int(st, inst, "timeout_ms", 1, 600000, 1000,
			    &st->timeout_ms);
	if (rc == KW_OK)
		rc = rd_int(st, inst, "usage_days", 1, 3660, 35,
			    &st->usage_days);
	if (rc != KW_OK)
		return rc;
	rc = h->setting_string(inst, "password_file", &path);
	if (rc == KW_ERR_NOTFOUND)
		return st->username != NULL ? (h->error(inst, "username",
				"username needs a password_file"),
				KW_ERR_CONFIG) : KW_OK;
	if (rc == KW_OK)
		rc = rd_read_password(st, inst, path);
	return rc;
}

static kw_status rd_open(const kw_host *host, kw_instance *inst,
			 void **state)
{
	struct rd_state *st;
	kw_status rc;

	*state = NULL;
	if (!KW_HOST_HAS(host, instance_role) ||
	    host->instance_role(inst) != KW_INSTANCE_LEDGER) {
		host->error(inst, NULL,
			    "the redis module counts quotas: name it in "
			    "keyway.ledger, not among the backends");
		return KW_ERR_CONFIG;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	st->host = host;
	st->inst = inst;
	rc = rd_settings_read(st, inst);
	if (rc == KW_ERR_NOMEM)
		host->error(inst, NULL, "out of memory");
	if (rc != KW_OK)
		goto out;
	if (pthread_mutex_init(&st->lock, NULL) != 0) {
		host->error(inst, NULL, "cannot create a mutex");
		rc = KW_ERR_NOMEM;
		goto out;
	}
	st->lock_made = true;
	*state = st;
	st = NULL;
out:
	rd_close(st);
	return rc;
}

static const struct kw_module rd_module = {
	KW_MODULE_HEADER,
	.name = "redis",
	.description = "quota ledger in Redis, shared by many hosts",
	.caps = KW_CAP_LEDGER,
	.settings = rd_settings,
	.open = rd_open,
	.close = rd_close,
	.check = rd_check,
	.charge = rd_charge,
	.refund = rd_refund,
	.usage = rd_usage,
	.usage_filter_size = sizeof(kw_usage_filter),
};

KW_MODULE_EXPORT(rd_module)
