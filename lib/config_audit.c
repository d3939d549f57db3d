/*
 * config_audit.c - the settings of keyway.audit: where the audit trail
 * goes (audit_sink.c writes it) and what a failure to write it does.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "config_audit.h"
#include "config_group.h"
#include "context.h"
#include "error.h"

#define LOG_SOCKET "/dev/log"

/* The settings of keyway.audit, as indexes into names[]. */
enum { SINK, PATH, SOCKET, ON_FAILURE, NSETTINGS };

/* keyway.audit's settings, each with its line, and the group's. */
struct settings {
	const char *v[NSETTINGS];
	int lines[NSETTINGS];
	const char *file;
	int line;
};

/* sink = "syslog": the daemon's socket, relative to dir. */
static kw_status set_syslog(struct kwi_audit_conf *c, const struct settings *s,
			    const char *dir, struct kwi_diag *d)
{
	const char *sock = s->v[SOCKET] != NULL ? s->v[SOCKET] : LOG_SOCKET;

	c->to = KWI_AUDIT_SYSLOG;
	if (s->v[PATH] != NULL) {
		kwi_diag(d, KW_ERR_CONFIG, s->file, s->line,
			 "keyway.audit: sink \"syslog\" takes no path");
		return KW_ERR_CONFIG;
	}
	if ((size_t)snprintf(c->socket, sizeof(c->socket), "%s%s%s",
			     sock[0] == '/' ? "" : dir,
			     sock[0] == '/' ? "" : "/",
			     sock) >= sizeof(c->socket)) {
		kwi_diag(d, KW_ERR_CONFIG, s->file, s->lines[SOCKET],
			 "keyway.audit: socket: a path of at most %zu bytes",
			 sizeof(c->socket) - 1);
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

/* sink = "jsonl": a file, relative to dir. */
static kw_status set_jsonl(struct kwi_audit_conf *c, const struct settings *s,
			   const char *dir, struct kwi_diag *d)
{
	const char *path = s->v[PATH];

	c->to = KWI_AUDIT_JSONL;
	if (path == NULL) {
		kwi_diag(d, KW_ERR_CONFIG, s->file, s->line,
			 "keyway.audit: sink \"jsonl\" needs a path");
		return KW_ERR_CONFIG;
	}
	if (s->v[SOCKET] != NULL) {
		kwi_diag(d, KW_ERR_CONFIG, s->file, s->lines[SOCKET],
			 "keyway.audit: sink \"jsonl\" takes no socket");
		return KW_ERR_CONFIG;
	}
	if (path[0] == '/')
		snprintf(c->path, sizeof(c->path), "%s", path);
	else
		snprintf(c->path, sizeof(c->path), "%s/%s", dir, path);
	return KW_OK;
}

/* The sink, then on_failure, into c. */
static kw_status set_conf(struct kwi_audit_conf *c, const struct settings *s,
			  const char *dir, struct kwi_diag *d)
{
	const char *sink = s->v[SINK], *on_failure = s->v[ON_FAILURE];
	kw_status rc;

	c->file = s->file;
	c->line = s->lines[PATH];
	if (sink != NULL && strcmp(sink, "syslog") == 0) {
		rc = set_syslog(c, s, dir, d);
	} else if (sink != NULL && strcmp(sink, "jsonl") == 0) {
		rc = set_jsonl(c, s, dir, d);
	} else {
		kwi_diag(d, KW_ERR_CONFIG, s->file, s->line,
			 "keyway.audit: sink must be \"jsonl\" or \"syslog\"");
		rc = KW_ERR_CONFIG;
	}
	if (rc != KW_OK)
		return rc;
	if (on_failure != NULL && strcmp(on_failure, "allow") == 0) {
		c->allow = true;
	} else if (on_failure != NULL && strcmp(on_failure, "deny") != 0) {
		kwi_diag(d, KW_ERR_CONFIG, s->file, s->line,
			 "keyway.audit: on_failure must be \"deny\" or "
			 "\"allow\"");
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

kw_status kwi_audit_parse(struct kw_ctx *ctx, const config_setting_t *g,
			  const char *file, struct kwi_diag *d)
{
	static const char *const names[] = { [SINK] = "sink",
					     [PATH] = "path",
					     [SOCKET] = "socket",
					     [ON_FAILURE] = "on_failure",
					     NULL };
	struct settings s = { .file = file };
	struct kwi_audit_conf c;
	kw_status rc;

	s.line = (int)config_setting_source_line(g);
	for (size_t i = 0; i < NSETTINGS; i++)
		s.lines[i] = s.line;
	if (!config_setting_is_group(g)) {
		kwi_diag(d, KW_ERR_CONFIG, file, s.line,
			 "keyway.audit must be a group { sink = ...; }");
		return KW_ERR_CONFIG;
	}
	rc = kwi_group_strings(g, file, "keyway.audit", names,
			       "sink, path, socket or on_failure", false, s.v,
			       s.lines, d);
	if (rc != KW_OK)
		return rc;
	memset(&c, 0, sizeof(c));
	rc = set_conf(&c, &s, ctx->dir, d);
	if (rc != KW_OK)
		return rc;
	/* A master key that is set but failed has said so itself. */
	if (config_setting_get_member(config_setting_parent(g),
				      "master_key") == NULL) {
		kwi_diag(d, KW_ERR_CONFIG, file, s.line,
			 "keyway.audit: key fingerprints are keyed with the "
			 "master key: set keyway.master_key");
		ctx->audit_wants_master = true;
		return KW_ERR_CONFIG;
	}
	if (kwi_audit_new(ctx, &c) != KW_OK) {
		kwi_diag(d, KW_ERR_NOMEM, file, s.line,
			 "keyway.audit: out of memory");
		return KW_ERR_NOMEM;
	}
	return KW_OK;
}
