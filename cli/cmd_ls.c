/*
 * cmd_ls.c - ls: the stored keys, masked, as a table or as JSON.
 */
#define _GNU_SOURCE

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* One key as ls shows it; copied, since kw_key_info lives for one call. */
struct key_row {
	char *backend;
	kw_scope scope;
	char *owner; /* NULL for system keys */
	char *provider;
	char *name;  /* NULL if none */
	bool active;
	char *masked;
	uint64_t usage_count;
	int64_t last_used;
	int64_t created;
	int64_t rotated;
	char *key_id;
};

struct key_rows {
	struct key_row *v;
	size_t n;
	size_t cap;
	bool due;       /* keep only keys rotated before cutoff */
	int64_t cutoff;
	bool nomem;
};

static void key_row_free(struct key_row *r)
{
	free(r->backend);
	free(r->owner);
	free(r->provider);
	free(r->name);
	free(r->masked);
	free(r->key_id);
}

static void key_rows_free(struct key_rows *rows)
{
	size_t i;

	for (i = 0; i < rows->n; i++)
		key_row_free(&rows->v[i]);
	free(rows->v);
	rows->v = NULL;
	rows->n = rows->cap = 0;
}

/* *dst = a copy of src, or NULL for NULL (and for "" when empty_is_null). */
static bool copy_field(char **dst, const char *src, bool empty_is_null)
{
	*dst = NULL;
	if (!src || (empty_is_null && *src == '\0'))
		return true;
	*dst = strdup(src);
	return *dst != NULL;
}

static kw_status collect_key(void *arg, const kw_key_info *info)
{
	struct key_rows *rows = arg;
	struct key_row *r, *grown;

	if (rows->due && info->rotated >= rows->cutoff)
		return KW_OK;
	grown = cli_grow(rows->v, &rows->cap, rows->n, sizeof(*grown), 16);
	if (!grown)
		goto nomem;
	rows->v = grown;
	r = &rows->v[rows->n];
	memset(r, 0, sizeof(*r));
	r->scope = info->scope;
	r->active = info->active != 0;
	r->usage_count = info->usage_count;
	r->last_used = info->last_used;
	r->created = info->created;
	r->rotated = info->rotated;
	if (!copy_field(&r->backend, info->backend, false) ||
	    !copy_field(&r->owner, info->owner, false) ||
	    !copy_field(&r->provider, info->provider, false) ||
	    !copy_field(&r->name, info->name, true) ||
	    !copy_field(&r->masked, info->masked, false) ||
	    !copy_field(&r->key_id, info->key_id, false)) {
		key_row_free(r);
		goto nomem;
	}
	rows->n++;
	return KW_OK;

nomem:
	rows->nomem = true;
	return KW_ERR_NOMEM;
}

enum {
	COL_BACKEND,
	COL_SCOPE,
	COL_OWNER,
	COL_PROVIDER,
	COL_NAME,
	COL_STATE,
	COL_KEY,
	COL_USES,
	COL_LAST_USED,
	COL_ROTATED,
	NCOLS
};

static const char *const ls_header[NCOLS] = {
	"BACKEND", "SCOPE", "OWNER", "PROVIDER", "NAME", "STATE", "KEY",
	"USES", "LAST-USED", "ROTATED"
};

/* The cells of one table row; s[] may point into the buffers. */
static void day_cell(int64_t t, char *buf, size_t size)
{
	if (t == 0)
		snprintf(buf, size, "never");
	else
		cli_format_time(t, TIME_DAY, buf, size);
}

static void row_cells(const void *rows, size_t i, const char **s,
		      char (*buf)[CLI_CELL_SIZE])
{
	const struct key_row *r = (const struct key_row *)rows + i;

	snprintf(buf[COL_USES], CLI_CELL_SIZE, "%" PRIu64, r->usage_count);
	day_cell(r->last_used, buf[COL_LAST_USED], CLI_CELL_SIZE);
	day_cell(r->rotated, buf[COL_ROTATED], CLI_CELL_SIZE);
	s[COL_BACKEND] = cli_str(r->backend);
	s[COL_SCOPE] = kw_scope_str(r->scope);
	s[COL_OWNER] = r->owner ? r->owner : "-";
	s[COL_PROVIDER] = cli_str(r->provider);
	s[COL_NAME] = r->name ? r->name : "-";
	s[COL_STATE] = r->active ? "active" : "disabled";
	s[COL_KEY] = cli_str(r->masked);
	s[COL_USES] = buf[COL_USES];
	s[COL_LAST_USED] = buf[COL_LAST_USED];
	s[COL_ROTATED] = buf[COL_ROTATED];
}

/* json_object_set_new() takes value even when it fails, NULL included. */
static json_t *key_row_json(const void *rows, size_t i)
{
	const struct key_row *r = (const struct key_row *)rows + i;
	json_int_t uses = r->usage_count > (uint64_t)INT64_MAX ?
			  (json_int_t)INT64_MAX : (json_int_t)r->usage_count;
	json_t *o = json_object();

	if (!o)
		return NULL;
	if (json_object_set_new(o, "backend",
				cli_json_str_or_null(r->backend)) ||
	    json_object_set_new(o, "scope",
				json_string(kw_scope_str(r->scope))) ||
	    json_object_set_new(o, "owner", cli_json_str_or_null(r->owner)) ||
	    json_object_set_new(o, "provider",
				cli_json_str_or_null(r->provider)) ||
	    json_object_set_new(o, "name", cli_json_str_or_null(r->name)) ||
	    json_object_set_new(o, "active", json_boolean(r->active)) ||
	    json_object_set_new(o, "masked", cli_json_str_or_null(r->masked)) ||
	    json_object_set_new(o, "usage_count", json_integer(uses)) ||
	    json_object_set_new(o, "last_used", cli_json_time(r->last_used)) ||
	    json_object_set_new(o, "created", cli_json_time(r->created)) ||
	    json_object_set_new(o, "rotated", cli_json_time(r->rotated)) ||
	    json_object_set_new(o, "key_id", cli_json_str_or_null(r->key_id))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Whether --due was given without its =DAYS. */
static bool bare_due(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--due") == 0)
			return true;
	return false;
}

int cmd_ls(const struct command *cmd, int argc, char **argv,
	   const char *config)
{
	static const char *const operands[] = { "BACKEND", NULL };
	struct cli_args a = { .config = config };
	kw_actor actor = KW_ACTOR_INIT;
	struct key_rows rows = { 0 };
	const char *owner = NULL;
	bool json = false;
	int64_t due_days = -1; /* no --due */
	struct cli_option options[] = {
		CLI_OPT_IDENTITY("owner", &owner),
		CLI_OPT_FLAG("json", &json),
		CLI_OPT("due", 0, CLI_DAYS, days, &due_days),
		CLI_END
	};
	char *user = NULL;
	kw_ctx *ctx = NULL;
	kw_status st;
	int rc;

	rc = cli_parse_operands(cmd, argc, argv, options, &a, 0, operands);
	if (rc == GO_ON && a.npos > 0)
		rc = cli_check_name(cmd->name, "backend", a.pos[0], CLI_NAME);
	/* "ls --due 30": the 30 is taken for a backend. */
	if (rc == GO_ON && a.npos > 0 && bare_due(argc, argv) &&
	    strspn(a.pos[0], "0123456789") == strlen(a.pos[0]))
		rc = cli_usage_error(cmd->name, "\"%s\" is taken for a "
				     "BACKEND; for a number of days, write "
				     "--due=%s", a.pos[0], a.pos[0]);
	if (rc != GO_ON)
		return rc;

	rc = cli_open_as_admin(cmd->name, &a, &ctx, &actor, &user);
	if (rc != GO_ON)
		goto out;
	if (due_days >= 0) {
		rows.due = true;
		rows.cutoff = (int64_t)time(NULL) - due_days * SECONDS_PER_DAY;
	}
	st = kw_key_list(ctx, &actor, a.npos > 0 ? a.pos[0] : NULL, owner,
			 collect_key, &rows);
	if (rows.nomem) {
		fprintf(stderr, "keyway: ls: out of memory\n");
		rc = EXIT_ERR;
		goto out;
	}
	if (st != KW_OK) {
		rc = cli_lib_error(st);
		goto out;
	}
	if (json) {
		rc = cli_print_json(cli_json_list(rows.v, rows.n,
						  key_row_json),
				    cmd->name, "the list", "a field");
	} else {
		cli_print_table(ls_header, NCOLS, rows.v, rows.n, row_cells);
		rc = EXIT_OK;
	}
out:
	key_rows_free(&rows);
	kw_close(ctx);
	free(user);
	return rc;
}
