/*
 * check.c - kw_check() and kw_init(): a configuration loaded to find every
 * problem in it, or to create the files it names.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <keyway/keyway.h>

#include "audit.h"
#include "conf.h"
#include "context.h"
#include "error.h"
#include "host.h"
#include "loader.h"
#include "remote.h"

static kw_status check_config(const char *path, struct kwi_diag *d);

kw_status kw_check(const char *path, kw_report_fn *report, void *arg)
{
	struct kwi_diag d = { report, arg, KW_OK, 0, NULL };

	return check_config(path, &d);
}

kw_status kw_check_problems(const char *path, kw_problem_fn *fn, void *arg)
{
	struct kwi_diag d = { NULL, arg, KW_OK, 0, fn };

	return check_config(path, &d);
}

static kw_status check_config(const char *path, struct kwi_diag *d)
{
	kw_ctx *ctx;
	kw_status rc = kwi_ctx_load(&ctx, path, d, true, true);

	if (ctx == NULL)
		return rc;
	/* A client's one backend is keywayd. */
	if (ctx->remote != NULL && rc == KW_OK)
		kwi_remote_check(ctx->remote, d);
	{
		/* Every backend that opened gets its health check. */
		for (size_t i = 0; ctx != NULL && i <= ctx->nbackends; i++) {
			struct kw_instance *b = i < ctx->nbackends
							? &ctx->backends[i]
							: ctx->ledger;
			struct kw_reply r;
			kw_status st;

			if (b == NULL || !b->opened ||
			    b->module->ops.check == NULL)
				continue;
			kwi_reply_init(&r, b->name);
			st = b->module->ops.check(b->state, &r);
			kwi_reply_clear(&r);
			if (st != KW_OK)
				kwi_diag(d, st, b->file, b->line,
					 "%s: health check: %s%s%s",
					 b->label, kw_status_str(st),
					 r.detail[0] != '\0' ? ": " : "",
					 r.detail);
		}
	}
	kw_close(ctx);
	return d->first;
}

/* The files a configuration names that init may make, missing before. */
struct init_file {
	const char *path;
	const char *label;  /* "backend \"NAME\"", "keyway.ledger", ... */
};

static bool file_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Note path unless it exists or is noted already. */
static kw_status note_missing(struct init_file **files, size_t *n,
			      const char *path, const char *label)
{
	struct init_file *grown;

	if (path == NULL || file_exists(path))
		return KW_OK;
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*files)[i].path, path) == 0)
			return KW_OK;
	grown = realloc(*files, (*n + 1) * sizeof(**files));
	if (grown == NULL)
		return KW_ERR_NOMEM;
	*files = grown;
	(*files)[*n].path = path;
	(*files)[(*n)++].label = label;
	return KW_OK;
}

/*
 * What the modules create is what an ordinary open creates: init opens
 * everything as kw_open() does, and tells which of the paths it names did
 * not exist before and do now.
 */
kw_status kw_init(const char *path, kw_report_fn *created,
		  kw_report_fn *report, void *arg)
{
	struct kwi_diag d = { report, arg, KW_OK, 0, NULL };
	struct init_file *files = NULL;
	size_t n = 0;
	kw_ctx *ctx;
	kw_status rc = KW_OK;

	rc = kwi_ctx_new(&ctx);
	if (rc != KW_OK)
		return rc;
	if (kwi_config_load(ctx, kwi_config_path(path), &d) != KW_OK)
		goto out;
	for (size_t i = 0; rc == KW_OK && i <= ctx->nbackends; i++) {
		const struct kw_instance *b = i == 0 ? ctx->ledger
						     : &ctx->backends[i - 1];

		for (size_t j = 0; b != NULL && rc == KW_OK && j < b->npaths;
		     j++)
			rc = note_missing(&files, &n, b->paths[j].value,
					  b->label);
	}
	if (rc == KW_OK)
		rc = note_missing(&files, &n, kwi_audit_path(ctx),
				  "keyway.audit");
	if (rc != KW_OK) {
		kwi_diag(&d, rc, ctx->path, 0, "out of memory");
		goto out;
	}
	(void)kwi_audit_open(ctx, &d);
	(void)kwi_backends_open(ctx, &d, true);
	for (size_t i = 0; i < n; i++) {
		char line[1200];

		if (!file_exists(files[i].path))
			continue;
		snprintf(line, sizeof(line), "created %s (%s)", files[i].path,
			 files[i].label);
		if (created != NULL)
			created(arg, line);
	}
out:
	free(files);
	kw_close(ctx);
	return d.first;
}
