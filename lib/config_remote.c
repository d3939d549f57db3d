/*
 * config_remote.c - keyway.daemon: the socket of the keywayd(8) that a
 * client configuration asks, and what such a configuration may not hold.
 *
 *     keyway: { daemon = "/run/keyway/keyway.sock"; };
 *     keyway: { daemon: { socket = "/run/keyway/keyway.sock";
 *                         timeout_ms = 10000; }; };
 *
 * A client holds no master key, opens no store and loads no module:
 * keywayd does, with its own configuration.  What a client's file would
 * declare besides would be ignored, so it is refused (fail closed): a
 * sysadmin who writes a chain into it would otherwise believe it is
 * used.
 */
#include "config.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "conf.h"
#include "config_int.h"
#include "context.h"
#include "error.h"
#include "fsutil.h"
#include "remote.h"

/* The longest keyway.daemon.timeout_ms: ten minutes. */
#define TIMEOUT_MS_MAX 600000

void kwi_config_not_client(struct kwi_loader *l, const config_setting_t *s,
			   const char *what)
{
	kwi_problem(l, KW_ERR_CONFIG, s,
		    "%s: a configuration with keyway.daemon is a client of "
		    "keywayd and takes nothing else; move %s to keywayd's "
		    "configuration",
		    what, what);
}

/* keyway.daemon { socket = ...; timeout_ms = ...; } into c; false after
 * reporting a problem. */
static bool daemon_group(struct kwi_loader *l, const config_setting_t *g,
			 struct kwi_remote_conf *c)
{
	bool ok = true;

	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		int type = config_setting_type(s);
		long long v;

		if (strcmp(name, "socket") == 0 && type == CONFIG_TYPE_STRING) {
			c->socket = config_setting_get_string(s);
		} else if (strcmp(name, "timeout_ms") == 0 &&
			   (type == CONFIG_TYPE_INT ||
			    type == CONFIG_TYPE_INT64)) {
			v = config_setting_get_int64(s);
			if (v < 1 || v > TIMEOUT_MS_MAX) {
				kwi_problem(l, KW_ERR_CONFIG, s,
					    "keyway.daemon.timeout_ms must be "
					    "between 1 and %d",
					    TIMEOUT_MS_MAX);
				ok = false;
			}
			c->timeout_ms = (long)v;
		} else if (strcmp(name, "socket") == 0 ||
			   strcmp(name, "timeout_ms") == 0) {
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "keyway.daemon.%s must be %s", name,
				    name[0] == 's' ? "a string"
						   : "an integer");
			ok = false;
		} else {
			kwi_problem(l, KW_ERR_CONFIG, s,
				    "keyway.daemon: unknown setting \"%s\" "
				    "(expected socket or timeout_ms)",
				    name);
			ok = false;
		}
	}
	return ok;
}

void kwi_config_daemon(struct kwi_loader *l, const config_setting_t *g)
{
	struct kwi_remote_conf c = { NULL, KWI_REMOTE_TIMEOUT_MS, NULL, 0 };
	struct sockaddr_un sa;
	char *abs, *dir, why[1024];
	kw_status rc;

	c.file = kwi_source_path(l->ctx, g);
	c.line = (int)config_setting_source_line(g);
	if (config_setting_type(g) == CONFIG_TYPE_STRING) {
		c.socket = config_setting_get_string(g);
	} else if (config_setting_is_group(g)) {
		if (!daemon_group(l, g, &c))
			return;
	} else {
		kwi_problem(l, KW_ERR_CONFIG, g,
			    "keyway.daemon must be the path of keywayd's "
			    "socket, or a group { socket = \"...\"; "
			    "timeout_ms = N; }");
		return;
	}
	if (c.socket == NULL || c.socket[0] == '\0') {
		kwi_problem(l, KW_ERR_CONFIG, g,
			    "keyway.daemon: no socket (socket = "
			    "\"/run/keyway/keyway.sock\";)");
		return;
	}
	abs = kwi_config_abs(l->ctx, c.socket);
	if (abs == NULL) {
		kwi_problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	if (strlen(abs) >= sizeof(sa.sun_path)) {
		kwi_problem(l, KW_ERR_CONFIG, g,
			    "keyway.daemon: the socket's path %s is longer "
			    "than a Unix socket's %zu bytes; choose a shorter "
			    "one",
			    abs, sizeof(sa.sun_path) - 1);
		free(abs);
		return;
	}
	/* Whoever may put a socket at that path may hand out keys: the
	 * directories down to it (as far as they exist yet) must be root's
	 * or this user's, and not writable by others. */
	dir = strdup(abs);
	if (dir == NULL) {
		kwi_problem(l, KW_ERR_NOMEM, g, "out of memory");
		free(abs);
		return;
	}
	rc = kwi_path_trusted(dirname(dir), why, sizeof(why));
	free(dir);
	if (rc != KW_OK && rc != KW_ERR_NOTFOUND) {
		kwi_problem(l, rc, g,
			    "keyway.daemon: %s; whoever can put a socket at %s "
			    "can hand this program keys of their choosing: keep "
			    "keywayd's socket in a directory only root or its "
			    "user may write to",
			    why, abs);
		free(abs);
		return;
	}
	c.socket = abs;
	rc = kwi_remote_new(&c, &l->ctx->remote);
	free(abs);
	if (rc != KW_OK)
		kwi_problem(l, rc, g, "%s",
			    rc == KW_ERR_NOMEM ? "out of memory"
					       : kw_last_error());
}
