/*
 * dconf.c - the `daemon` section of keyway.conf, which libkeyway leaves to
 * keywayd: the socket, its mode and group, how long a lease lives, which
 * callers may use which chains, the admin socket and who may use it, and
 * the TCP listener, its token and its chains.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>

#include "keywayd.h"

#define DEFAULT_LEASE_TTL 300
#define DEFAULT_MAX_LEASES 65536

static bool bad(char *err, size_t errsz, const char *path,
		const config_setting_t *s, const char *what)
{
	snprintf(err, errsz, "%s:%d: %s", path,
		 s ? config_setting_source_line(s) : 0, what);
	return false;
}

/*
 * A user's uid or a group's gid, looked up with the reentrant calls: a
 * SIGHUP reads the configuration again while the request threads run and
 * look callers up with getpwuid_r().  Returns 0, ENOENT
 * when there is no such name, or the errno of the lookup.
 */
static int lookup_id(const char *name, bool group, unsigned *id)
{
	long hint = sysconf(group ? _SC_GETGR_R_SIZE_MAX : _SC_GETPW_R_SIZE_MAX);
	size_t size = hint > 0 ? (size_t)hint : 1024;
	int rc;

	for (;;) {
		char *buf = malloc(size);

		if (!buf)
			return ENOMEM;
		if (group) {
			struct group gr, *found = NULL;

			rc = getgrnam_r(name, &gr, buf, size, &found);
			if (rc == 0 && found)
				*id = (unsigned)gr.gr_gid;
			else if (rc == 0)
				rc = ENOENT;
		} else {
			struct passwd pw, *found = NULL;

			rc = getpwnam_r(name, &pw, buf, size, &found);
			if (rc == 0 && found)
				*id = (unsigned)pw.pw_uid;
			else if (rc == 0)
				rc = ENOENT;
		}
		free(buf);
		if (rc != ERANGE || size >= (1u << 20))
			return rc;
		size *= 2;
	}
}

/* Is v the name of a chain of the configuration's chains section
 * (sec, NULL when there is none)?  When not, err says so, naming the
 * setting s, what it is, and the chain. */
static bool known_chain(const char *path, const config_setting_t *sec,
			const config_setting_t *s, const char *what,
			const char *v, char *err, size_t errsz)
{
	char msg[256];

	if (sec && config_setting_is_group(sec) &&
	    config_setting_get_member(sec, v))
		return true;
	snprintf(msg, sizeof(msg), "%s: no chain \"%.64s\" in the chains "
		 "section; name one of its chains, or add it", what, v);
	return bad(err, errsz, path, s, msg);
}

static bool load_client(const char *path, config_setting_t *cs,
			const config_setting_t *sec, struct kwd_client *c,
			char *err, size_t errsz)
{
	char msg[256];
	const char *user = NULL, *group = NULL;
	config_setting_t *chains;
	int n = config_setting_length(cs), rc;
	unsigned id;

	if (!config_setting_is_group(cs))
		return bad(err, errsz, path, cs,
			   "daemon.clients: each entry is a group { user = "
			   "\"NAME\"; chains = (...); }");
	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(cs, i);
		const char *name = config_setting_name(s);

		if (strcmp(name, "user") && strcmp(name, "group") &&
		    strcmp(name, "chains")) {
			snprintf(msg, sizeof(msg),
				 "daemon.clients: unknown setting \"%s\" "
				 "(expected user, group or chains)", name);
			return bad(err, errsz, path, s, msg);
		}
	}
	config_setting_lookup_string(cs, "user", &user);
	config_setting_lookup_string(cs, "group", &group);
	if (!user == !group)
		return bad(err, errsz, path, cs,
			   "daemon.clients: give either user or group, as a "
			   "string");
	if (user) {
		rc = lookup_id(user, false, &id);
		if (rc) {
			snprintf(msg, sizeof(msg),
				 "daemon.clients: %s user \"%s\"",
				 rc == ENOENT ? "no such" : "cannot look up",
				 user);
			return bad(err, errsz, path, cs, msg);
		}
		c->uid = (uid_t)id;
	} else {
		rc = lookup_id(group, true, &id);
		if (rc) {
			snprintf(msg, sizeof(msg),
				 "daemon.clients: %s group \"%s\"",
				 rc == ENOENT ? "no such" : "cannot look up",
				 group);
			return bad(err, errsz, path, cs, msg);
		}
		c->is_group = true;
		c->gid = (gid_t)id;
	}
	chains = config_setting_get_member(cs, "chains");
	if (!chains || !(config_setting_is_list(chains) ||
			 config_setting_is_array(chains)))
		return bad(err, errsz, path, cs,
			   "daemon.clients: chains must be a list of chain "
			   "names, e.g. chains = (\"default\");");
	n = config_setting_length(chains);
	c->chains = calloc((size_t)n + 1, sizeof(*c->chains));
	if (!c->chains)
		return bad(err, errsz, path, cs, "out of memory");
	for (int i = 0; i < n; i++) {
		const char *v = config_setting_get_string_elem(chains, i);

		if (!v)
			return bad(err, errsz, path, chains,
				   "daemon.clients: chains must be strings");
		if (!known_chain(path, sec, chains, "daemon.clients", v, err,
				 errsz))
			return false;
		c->chains[i] = strdup(v);
		if (!c->chains[i])
			return bad(err, errsz, path, cs, "out of memory");
		c->nchains++;
	}
	return true;
}

static bool known_extra(const char *name)
{
	static const char *const names[] = {
		"admin_socket", "admin_socket_mode", "admin_group", "tcp",
		"tcp_token_file", "tcp_chains", NULL
	};

	for (const char *const *n = names; *n; n++)
		if (strcmp(name, *n) == 0)
			return true;
	return false;
}

/* An octal mode written as a string, "0660". */
static bool octal_mode(const char *path, const config_setting_t *s,
		       const char *what, mode_t *mode, char *err,
		       size_t errsz)
{
	const char *str = config_setting_get_string(s);
	char msg[128], *end;
	unsigned long m;

	m = str ? strtoul(str, &end, 8) : 0;
	if (!str || !*str || *end || m > 0777) {
		snprintf(msg, sizeof(msg), "%s must be an octal string, e.g. "
			 "\"0660\"", what);
		return bad(err, errsz, path, s, msg);
	}
	*mode = (mode_t)m;
	return true;
}

/* A string setting that must be an absolute path, copied into *out. */
static bool abs_path(const char *path, config_setting_t *d, const char *name,
		     char **out, char *err, size_t errsz)
{
	config_setting_t *s = config_setting_get_member(d, name);
	const char *str;
	char msg[128];

	if (!s)
		return true;
	str = config_setting_get_string(s);
	if (!str || str[0] != '/') {
		snprintf(msg, sizeof(msg), "daemon.%s must be an absolute path, "
			 "as a string", name);
		return bad(err, errsz, path, s, msg);
	}
	*out = strdup(str);
	if (!*out)
		return bad(err, errsz, path, s, "out of memory");
	return true;
}

/* admin_socket, admin_socket_mode and admin_group. */
static bool load_admin(const char *path, config_setting_t *d,
		       struct kwd_conf *dc, char *err, size_t errsz)
{
	config_setting_t *s;
	char msg[256];
	bool mode_set;

	if (!abs_path(path, d, "admin_socket", &dc->admin_socket, err, errsz))
		return false;

	mode_set = (s = config_setting_get_member(d, "admin_socket_mode")) !=
		   NULL;
	if (mode_set && !octal_mode(path, s, "daemon.admin_socket_mode",
				    &dc->admin_socket_mode, err, errsz))
		return false;
	if ((s = config_setting_get_member(d, "admin_group")) == NULL) {
		/* Without an admin group only root and keywayd's own user
		 * may manage keys: nobody else need reach the socket, whose
		 * group would otherwise be keywayd's (the clients' under
		 * the shipped units). */
		if (!mode_set)
			dc->admin_socket_mode = 0600;
	} else {
		const char *str = config_setting_get_string(s);
		unsigned gid;
		int rc;

		if (!str)
			return bad(err, errsz, path, s, "daemon.admin_group must "
				   "be a group name, as a string");
		rc = lookup_id(str, true, &gid);
		if (rc) {
			snprintf(msg, sizeof(msg),
				 "daemon.admin_group: %s group \"%s\"",
				 rc == ENOENT ? "no such" : "cannot look up",
				 str);
			return bad(err, errsz, path, s, msg);
		}
		dc->admin_gid = (gid_t)gid;
	}
	return true;
}

/* tcp, tcp_token_file and tcp_chains: all three, or none. */
static bool load_tcp(const char *path, config_setting_t *d,
		     const config_setting_t *sec, struct kwd_conf *dc,
		     char *err, size_t errsz)
{
	config_setting_t *s = config_setting_get_member(d, "tcp");
	config_setting_t *tf = config_setting_get_member(d, "tcp_token_file");
	config_setting_t *ch = config_setting_get_member(d, "tcp_chains");
	char msg[512], why[400];
	const char *str;
	int n;

	if (!s) {
		if (tf || ch)
			return bad(err, errsz, path, tf ? tf : ch,
				   "daemon.tcp_token_file and daemon.tcp_chains "
				   "are for daemon.tcp, which is not set");
		return true;
	}
	str = config_setting_get_string(s);
	if (!str)
		return bad(err, errsz, path, s, "daemon.tcp must be a string, "
			   "e.g. \"127.0.0.1:8377\" or \"[::1]:8377\"");
	if (!kwd_tcp_parse(str, &dc->tcp_addr, &dc->tcp_addrlen, why,
			   sizeof(why))) {
		snprintf(msg, sizeof(msg), "daemon.tcp: %s", why);
		return bad(err, errsz, path, s, msg);
	}
	dc->tcp = strdup(str);
	if (!dc->tcp)
		return bad(err, errsz, path, s, "out of memory");
	if (!tf || !config_setting_get_string(tf))
		return bad(err, errsz, path, tf ? tf : s,
			   "daemon.tcp needs daemon.tcp_token_file, a private "
			   "file holding the token every TCP request must "
			   "carry (Authorization: Bearer TOKEN)");
	if (!kwd_tcp_read_token(config_setting_get_string(tf), &dc->tcp_token,
				&dc->tcp_token_len, why, sizeof(why))) {
		snprintf(msg, sizeof(msg), "daemon.tcp_token_file: %s", why);
		return bad(err, errsz, path, tf, msg);
	}
	if (!ch || !(config_setting_is_list(ch) ||
		     config_setting_is_array(ch)))
		return bad(err, errsz, path, ch ? ch : s,
			   "daemon.tcp needs daemon.tcp_chains, the chains TCP "
			   "callers may use, e.g. tcp_chains = (\"default\");");
	n = config_setting_length(ch);
	dc->tcp_chains = calloc((size_t)n + 1, sizeof(*dc->tcp_chains));
	if (!dc->tcp_chains)
		return bad(err, errsz, path, ch, "out of memory");
	for (int i = 0; i < n; i++) {
		const char *v = config_setting_get_string_elem(ch, i);

		if (!v)
			return bad(err, errsz, path, ch,
				   "daemon.tcp_chains must be strings");
		if (!known_chain(path, sec, ch, "daemon.tcp_chains", v, err,
				 errsz))
			return false;
		dc->tcp_chains[i] = strdup(v);
		if (!dc->tcp_chains[i])
			return bad(err, errsz, path, ch, "out of memory");
		dc->ntcp_chains++;
	}
	return true;
}

enum kwd_conf_status kwd_conf_load(const char *path, struct kwd_conf *dc,
				   char *err, size_t errsz)
{
	config_t cfg;
	config_setting_t *d, *s, *sec;
	char *dir, msg[256];
	const char *str;
	enum kwd_conf_status ok = KWD_CONF_BAD;
	int n;

	memset(dc, 0, sizeof(*dc));
	dc->socket_mode = 0660;
	dc->socket_gid = (gid_t)-1;
	dc->admin_socket_mode = 0660;
	dc->admin_gid = (gid_t)-1;
	dc->lease_ttl = DEFAULT_LEASE_TTL;
	dc->max_leases = DEFAULT_MAX_LEASES;

	config_init(&cfg);
	dir = strdup(path);
	if (!dir) {
		snprintf(err, errsz, "out of memory");
		goto out;
	}
	config_set_include_dir(&cfg, dirname(dir));
	if (!config_read_file(&cfg, path)) {
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			snprintf(err, errsz, "%s: cannot read: %s", path,
				 strerror(errno));
		else
			snprintf(err, errsz, "%s:%d: %s",
				 config_error_file(&cfg) ?
				 config_error_file(&cfg) : path,
				 config_error_line(&cfg), config_error_text(&cfg));
		ok = KWD_CONF_UNREAD;
		goto out;
	}
	/* A client's configuration would have keywayd ask a keywayd. */
	d = config_lookup(&cfg, "keyway.daemon");
	if (d) {
		bad(err, errsz, path, d,
		    "keyway.daemon: this configuration makes libkeyway a "
		    "client of keywayd; give keywayd the configuration that "
		    "declares the backends and chains");
		ok = KWD_CONF_CLIENT;
		goto out;
	}
	/* The chains daemon.clients and daemon.tcp_chains may name. */
	sec = config_lookup(&cfg, "chains");
	d = config_lookup(&cfg, "daemon");
	if (!d) {
		ok = KWD_CONF_OK;
		goto out;
	}
	if (!config_setting_is_group(d)) {
		bad(err, errsz, path, d, "daemon must be a group: daemon: { ... };");
		goto out;
	}
	n = config_setting_length(d);
	for (int i = 0; i < n; i++) {
		const char *name;

		s = config_setting_get_elem(d, i);
		name = config_setting_name(s);
		if (strcmp(name, "socket") && strcmp(name, "socket_mode") &&
		    strcmp(name, "socket_group") && strcmp(name, "lease_ttl") &&
		    strcmp(name, "max_leases") && strcmp(name, "rate_limit") && strcmp(name, "clients") &&
		    !known_extra(name)) {
			snprintf(msg, sizeof(msg),
				 "daemon: unknown setting \"%s\" (expected "
				 "socket, socket_mode, socket_group, lease_ttl, "
				 "max_leases, rate_limit, clients, admin_socket, "
				 "admin_socket_mode, admin_group, tcp, "
				 "tcp_token_file or tcp_chains)", name);
			bad(err, errsz, path, s, msg);
			goto out;
		}
	}
	if (config_setting_lookup_string(d, "socket", &str)) {
		if (str[0] != '/') {
			bad(err, errsz, path, config_setting_get_member(d, "socket"),
			    "daemon.socket must be an absolute path");
			goto out;
		}
		dc->socket = strdup(str);
		if (!dc->socket) {
			snprintf(err, errsz, "out of memory");
			goto out;
		}
	}
	if ((s = config_setting_get_member(d, "socket_mode")) != NULL &&
	    !octal_mode(path, s, "daemon.socket_mode", &dc->socket_mode, err,
			errsz))
		goto out;
	if (config_setting_lookup_string(d, "socket_group", &str)) {
		unsigned gid;
		int rc = lookup_id(str, true, &gid);

		if (rc) {
			snprintf(msg, sizeof(msg),
				 "daemon.socket_group: %s group \"%s\"",
				 rc == ENOENT ? "no such" : "cannot look up",
				 str);
			bad(err, errsz, path,
			    config_setting_get_member(d, "socket_group"), msg);
			goto out;
		}
		dc->socket_gid = (gid_t)gid;
	}
	if ((s = config_setting_get_member(d, "lease_ttl")) != NULL) {
		int v = config_setting_get_int(s);

		if (config_setting_type(s) != CONFIG_TYPE_INT || v < 1 ||
		    v > 86400) {
			bad(err, errsz, path, s,
			    "daemon.lease_ttl must be a number of seconds from "
			    "1 to 86400");
			goto out;
		}
		dc->lease_ttl = (unsigned)v;
	}
	if ((s = config_setting_get_member(d, "max_leases")) != NULL) {
		int v = config_setting_get_int(s);

		if (config_setting_type(s) != CONFIG_TYPE_INT || v < 1 ||
		    v > 1048576) {
			bad(err, errsz, path, s,
			    "daemon.max_leases must be a number of keys from 1 "
			    "to 1048576");
			goto out;
		}
		dc->max_leases = (unsigned)v;
	}
	if ((s = config_setting_get_member(d, "rate_limit")) != NULL) {
		int v = config_setting_get_int(s);

		if (config_setting_type(s) != CONFIG_TYPE_INT || v < 0 ||
		    v > 1000000) {
			bad(err, errsz, path, s,
			    "daemon.rate_limit must be a number of requests a "
			    "second per caller, 0 (no limit) to 1000000");
			goto out;
		}
		dc->rate_limit = (unsigned)v;
	}
	if ((s = config_setting_get_member(d, "clients")) != NULL) {
		if (!config_setting_is_list(s)) {
			bad(err, errsz, path, s,
			    "daemon.clients must be a list: clients = ( { user "
			    "= \"NAME\"; chains = (\"default\"); } );");
			goto out;
		}
		n = config_setting_length(s);
		dc->have_clients = true;
		dc->clients = calloc((size_t)n + 1, sizeof(*dc->clients));
		if (!dc->clients) {
			snprintf(err, errsz, "out of memory");
			goto out;
		}
		for (int i = 0; i < n; i++) {
			if (!load_client(path, config_setting_get_elem(s, i),
					 sec, &dc->clients[i], err, errsz)) {
				dc->nclients = (size_t)i + 1;
				goto out;
			}
		}
		dc->nclients = (size_t)n;
	}
	if (!load_admin(path, d, dc, err, errsz) ||
	    !load_tcp(path, d, sec, dc, err, errsz))
		goto out;
	ok = KWD_CONF_OK;
out:
	free(dir);
	config_destroy(&cfg);
	if (ok != KWD_CONF_OK)
		kwd_conf_free(dc);
	return ok;
}

void kwd_conf_free(struct kwd_conf *dc)
{
	free(dc->socket);
	for (size_t i = 0; dc->clients != NULL && i < dc->nclients; i++) {
		for (size_t j = 0; j < dc->clients[i].nchains; j++)
			free(dc->clients[i].chains[j]);
		free(dc->clients[i].chains);
	}
	free(dc->clients);
	free(dc->admin_socket);
	free(dc->tcp);
	if (dc->tcp_token)
		explicit_bzero(dc->tcp_token, dc->tcp_token_len);
	free(dc->tcp_token);
	for (size_t i = 0; i < dc->ntcp_chains; i++)
		free(dc->tcp_chains[i]);
	free(dc->tcp_chains);
	memset(dc, 0, sizeof(*dc));
}

bool kwd_conf_tcp_allows(const struct kwd_conf *dc, const char *chain)
{
	for (size_t i = 0; i < dc->ntcp_chains; i++)
		if (strcmp(dc->tcp_chains[i], chain) == 0)
			return true;
	return false;
}

bool kwd_conf_allows(const struct kwd_conf *dc, uid_t uid, const gid_t *groups,
		     int ngroups, const char *chain)
{
	if (uid == 0 || uid == getuid())
		return true;
	for (size_t i = 0; i < dc->nclients; i++) {
		const struct kwd_client *c = &dc->clients[i];
		bool match = false;

		if (!c->is_group) {
			match = c->uid == uid;
		} else {
			for (int g = 0; g < ngroups && !match; g++)
				match = groups[g] == c->gid;
		}
		if (!match)
			continue;
		for (size_t j = 0; j < c->nchains; j++)
			if (strcmp(c->chains[j], chain) == 0)
				return true;
	}
	return false;
}

bool kwd_conf_allows_some(const struct kwd_conf *dc, uid_t uid,
			  const gid_t *groups, int ngroups)
{
	if (uid == 0 || uid == getuid())
		return true;
	for (size_t i = 0; i < dc->nclients; i++) {
		const struct kwd_client *c = &dc->clients[i];

		if (c->nchains == 0)
			continue;
		if (!c->is_group && c->uid == uid)
			return true;
		for (int g = 0; c->is_group && g < ngroups; g++)
			if (groups[g] == c->gid)
				return true;
	}
	return false;
}
