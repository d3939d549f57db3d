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

/*
 * The problems of a check, held so that they are told in the order of the
 * files and lines they are on, not in the order they were found in (the
 * settings of keyway are read before the backends, the backends opened
 * after every setting is read).
 */
struct held {
	char *file;
	int line;
	char *message;
	kw_status status;
	size_t seq;   /* found as the seq-th */
	size_t file_seq; /* its file first named by the file_seq-th */
};

struct holder {
	struct kwi_diag *out;   /* where they go in the end */
	struct held *v;
	size_t n, cap;
	bool failed;            /* out of memory: told as found since */
};

static void hold(void *arg, const kw_problem *p)
{
	struct holder *h = arg;
	struct held *grown, *e;

	if (!h->failed && h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 16;

		grown = realloc(h->v, cap * sizeof(*grown));
		if (grown == NULL) {
			h->failed = true;
		} else {
			h->v = grown;
			h->cap = cap;
		}
	}
	if (!h->failed) {
		e = &h->v[h->n];
		e->file = strdup(p->file != NULL ? p->file : "");
		e->message = strdup(p->message);
		if (e->file == NULL || e->message == NULL) {
			free(e->file);
			free(e->message);
			h->failed = true;
		} else {
			e->line = p->line;
			e->status = p->status;
			e->seq = h->n;
			e->file_seq = h->n;
			for (size_t i = 0; i < h->n; i++)
				if (strcmp(h->v[i].file, e->file) == 0) {
					e->file_seq = h->v[i].file_seq;
					break;
				}
			h->n++;
			return;
		}
	}
	kwi_diag(h->out, p->status, p->file, p->line, "%s", p->message);
}

static int held_order(const void *a, const void *b)
{
	const struct held *x = a, *y = b;

	if (x->file_seq != y->file_seq)
		return x->file_seq < y->file_seq ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Tell what h holds, in file order, and free it. */
static void release(struct holder *h)
{
	if (h->n > 1)
		qsort(h->v, h->n, sizeof(*h->v), held_order);
	for (size_t i = 0; i < h->n; i++) {
		kwi_diag(h->out, h->v[i].status, h->v[i].file, h->v[i].line,
			 "%s", h->v[i].message);
		free(h->v[i].file);
		free(h->v[i].message);
	}
	free(h->v);
	h->v = NULL;
	h->n = h->cap = 0;
}

static kw_status check_in_order(const char *path, struct kwi_diag *out)
{
	struct holder h = { out, NULL, 0, 0, false };
	struct kwi_diag d = { NULL, &h, KW_OK, 0, hold };

	(void)check_config(path, &d);
	release(&h);
	/* The status is that of the problem found first, as kw_open() would
	 * fail with it (a module's own status), whatever line it is on. */
	if (d.first != KW_OK)
		out->first = d.first;
	return out->first;
}

kw_status kw_check(const char *path, kw_report_fn *report, void *arg)
{
	struct kwi_diag d = { report, arg, KW_OK, 0, NULL };

	return check_in_order(path, &d);
}

kw_status kw_check_problems(const char *path, kw_problem_fn *fn, void *arg)
{
	struct kwi_diag d = { NULL, arg, KW_OK, 0, fn };

	return check_in_order(path, &d);
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
	/* What init leaves must pass a check: what it could not make, and
	 * what no file holds (a ledger that cannot be reached), is told as
	 * check tells it. */
	if (d.first == KW_OK)
		(void)check_in_order(path, &d);
	return d.first;
}
