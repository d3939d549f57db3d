/*
 * env.c - the env backend: API keys from the process environment, or from a
 * dotenv file that only its owner can read.
 *
 * The variable for a provider comes from the `vars` map, else from the
 * provider's name ("google-ai" -> GOOGLE_AI_API_KEY).  The environment wins
 * over the dotenv file, as dotenv loaders do, so that an operator can
 * override a key for one run without editing the file; `environment =
 * false` makes the file the only source, for a backend that must never
 * hand out the server's own key.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keyway/module.h>

#define ENV_DOTENV_MAX (1024 * 1024)
#define ENV_NAME_MAX 128 /* room for a name made from a provider */

/* One pair of `vars`; the strings belong to the host until close(). */
struct env_map {
	const char *provider;
	const char *var;
};

/* One variable of the dotenv file. */
struct env_entry {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
	size_t order; /* position in the file, so that the last one wins */
};

/* Immutable after open(), which is what makes lookup() thread-safe. */
struct env_state {
	const kw_host *host;
	struct env_map *map;
	size_t nmap;
	bool use_environ;        /* consult the process environment */
	const char *path;        /* dotenv file, or NULL */
	const char *missing;     /* dotenv file that does not exist, or NULL */
	struct env_entry *vars;  /* sorted by name, no duplicates */
	size_t nvars;
	char *store;             /* secure memory: every name and value */
	size_t store_len;
};

static bool env_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static char *env_skip_blanks(char *p, const char *end)
{
	while (p < end && env_is_blank(*p))
		p++;
	return p;
}

/* [A-Za-z_][A-Za-z0-9_]*, spelled out so that the locale plays no part. */
static bool env_is_name(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      c == '_' || (i > 0 && c >= '0' && c <= '9')))
			return false;
	}
	return len > 0;
}

static int env_name_cmp(const char *a, size_t alen, const char *b,
			size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int env_entry_cmp(const void *pa, const void *pb)
{
	const struct env_entry *a = pa, *b = pb;
	int c = env_name_cmp(a->name, a->name_len, b->name, b->name_len);

	return c != 0 ? c : (a->order > b->order) - (a->order < b->order);
}

static int env_entry_find(const void *key, const void *elem)
{
	const struct env_entry *e = elem;

	return env_name_cmp(key, strlen(key), e->name, e->name_len);
}

/*
 * The parser works on one line [p, end) of the file buffer and answers NULL,
 * or what is wrong.  What is wrong never quotes the line: it may hold a key.
 */

/* After a closing quote only blanks and a comment may follow. */
static const char *env_parse_tail(char *p, const char *end)
{
	p = env_skip_blanks(p, end);
	return p == end || *p == '#' ? NULL : "text after closing quote";
}

/* Decode a double-quoted value in place: the text only ever shrinks. */
static const char *env_parse_dquoted(char *p, const char *end,
				     struct env_entry *e)
{
	char *out = p;

	e->value = p;
	for (; p < end && *p != '"'; p++) {
		if (*p != '\\') {
			*out++ = *p;
			continue;
		}
		if (++p == end)
			break;
		switch (*p) {
		case 'n':
			*out++ = '\n';
			break;
		case 't':
			*out++ = '\t';
			break;
		case '"':
		case '\\':
		case '$':
			*out++ = *p;
			break;
		default:
			return "unknown escape in double quotes "
			       "(only \\n \\t \\\" \\\\ \\$ are known)";
		}
	}
	if (p == end)
		return "unterminated double quote";
	e->value_len = (size_t)(out - e->value);
	return env_parse_tail(p + 1, end);
}

/* p is the first character after '=' and its blanks. */
static const char *env_parse_value(char *p, const char *end,
				   struct env_entry *e)
{
	char *quote;

	if (p < end && *p == '"')
		return env_parse_dquoted(p + 1, end, e);
	if (p < end && *p == '\'') {
		quote = memchr(p + 1, '\'', (size_t)(end - p - 1));
		if (quote == NULL)
			return "unterminated single quote";
		e->value = p + 1;
		e->value_len = (size_t)(quote - p - 1);
		return env_parse_tail(quote + 1, end);
	}
	/* Unquoted: up to a '#' that follows a blank (p[-1] is at worst the
	 * '='), without the blanks before it. */
	e->value = p;
	while (p < end && !(*p == '#' && env_is_blank(p[-1])))
		p++;
	while (p > e->value && env_is_blank(p[-1]))
		p--;
	e->value_len = (size_t)(p - e->value);
	return NULL;
}

/* One line: blank, comment, or [export] NAME=VALUE.  e->name stays NULL
 * for a line that sets nothing. */
static const char *env_parse_line(char *p, const char *end,
				  struct env_entry *e)
{
	char *name;

	memset(e, 0, sizeof(*e));
	p = env_skip_blanks(p, end);
	if (p == end || *p == '#')
		return NULL;
	if (end - p > 6 && memcmp(p, "export", 6) == 0 && env_is_blank(p[6]))
		p = env_skip_blanks(p + 6, end);
	name = p;
	while (p < end && !env_is_blank(*p) && *p != '=')
		p++;
	e->name_len = (size_t)(p - name);
	p = env_skip_blanks(p, end);
	if (e->name_len == 0 || p == end || *p != '=')
		return "expected NAME=VALUE";
	if (!env_is_name(name, e->name_len))
		return "invalid variable name (use letters, digits and '_', "
		       "not starting with a digit)";
	e->name = name;
	return env_parse_value(env_skip_blanks(p + 1, end), end, e);
}

/*
 * Parse the dotenv text buf (len bytes, changed in place) into *out, a
 * malloc'd array of *nout entries in the file's order, pointing into buf.
 * On failure err holds "path:line: what is wrong" (or "out of memory").
 */
static KW_WARN_UNUSED kw_status env_parse_lines(const char *path, char *buf,
						size_t len,
						struct env_entry **out,
						size_t *nout, char *err,
						size_t errlen)
{
	struct env_entry *vars = NULL, *grown, e;
	size_t n = 0, cap = 0;
	char *p = buf, *end = buf + len, *nl;
	const char *why;
	unsigned line = 0;
	size_t linelen;
	kw_status rc = KW_OK;

	*out = NULL;
	*nout = 0;
	if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
		p += 3; /* a byte order mark, as some editors write */
	while (p < end) {
		line++;
		nl = memchr(p, '\n', (size_t)(end - p));
		linelen = (size_t)((nl != NULL ? nl : end) - p);
		if (linelen > 0 && p[linelen - 1] == '\r')
			linelen--;
		if (memchr(p, '\0', linelen) != NULL)
			why = "unexpected NUL byte";
		else
			why = env_parse_line(p, p + linelen, &e);
		if (why != NULL) {
			snprintf(err, errlen, "%s:%u: %s", path, line, why);
			rc = KW_ERR_CONFIG;
			goto out;
		}
		p = nl != NULL ? nl + 1 : end;
		if (e.name == NULL)
			continue;
		if (n == cap) {
			cap = cap != 0 ? 2 * cap : 16;
			grown = realloc(vars, cap * sizeof(*vars));
			if (grown == NULL) {
				snprintf(err, errlen, "out of memory");
				rc = KW_ERR_NOMEM;
				goto out;
			}
			vars = grown;
		}
		e.order = n;
		vars[n++] = e;
	}
	*out = vars;
	*nout = n;
	vars = NULL;
out:
	free(vars);
	return rc;
}

/*
 * Sort the n entries of vars by name and keep, of each name, the one set
 * last in the file.  Returns how many are kept; *store_len gets the room
 * their names and values take with a NUL after each.
 */
static size_t env_keep_last(struct env_entry *vars, size_t n,
			    size_t *store_len)
{
	size_t keep = 0;

	*store_len = 0;
	if (n > 1)
		qsort(vars, n, sizeof(*vars), env_entry_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i + 1 < n && env_name_cmp(vars[i].name, vars[i].name_len,
					      vars[i + 1].name,
					      vars[i + 1].name_len) == 0)
			continue; /* a later line sets it again */
		vars[keep++] = vars[i];
		*store_len += vars[i].name_len + vars[i].value_len + 2;
	}
	return keep;
}

/* Copy every name and value of vars (n entries) into store, NUL-terminated,
 * and point the entries at the copies. */
static void env_copy_to_store(struct env_entry *vars, size_t n, char *store)
{
	char *w = store;

	for (size_t i = 0; i < n; i++) {
		memcpy(w, vars[i].name, vars[i].name_len);
		w[vars[i].name_len] = '\0';
		vars[i].name = w;
		w += vars[i].name_len + 1;
		memcpy(w, vars[i].value, vars[i].value_len);
		w[vars[i].value_len] = '\0';
		vars[i].value = w;
		w += vars[i].value_len + 1;
	}
}

/*
 * Parse the dotenv text buf (len bytes, changed in place) into st->vars,
 * with every name and value copied into one block of secure memory.  On
 * failure st is untouched and err holds "path:line: what is wrong".
 */
static KW_WARN_UNUSED kw_status env_parse_dotenv(struct env_state *st,
						 const char *path, char *buf,
						 size_t len, char *err,
						 size_t errlen)
{
	struct env_entry *vars;
	size_t n, keep, store_len;
	char *store = NULL;
	kw_status rc;

	rc = env_parse_lines(path, buf, len, &vars, &n, err, errlen);
	if (rc != KW_OK)
		return rc;
	keep = env_keep_last(vars, n, &store_len);
	if (store_len > 0) {
		store = st->host->secure_alloc(store_len);
		if (store == NULL) {
			snprintf(err, errlen, "out of memory");
			free(vars);
			return KW_ERR_NOMEM;
		}
	}
	if (store != NULL) /* else nothing is kept */
		env_copy_to_store(vars, keep, store);
	st->vars = vars;
	st->nvars = keep;
	st->store = store;
	st->store_len = store_len;
	return KW_OK;
}

/* Read the whole of fd into secure memory: *buf (*size bytes) holds *len. */
static KW_WARN_UNUSED kw_status env_read_dotenv(struct env_state *st,
						kw_instance *inst,
						const char *path, int fd,
						char **buf, size_t *size,
						size_t *len)
{
	const kw_host *host = st->host;
	struct stat sb;
	ssize_t got;

	*buf = NULL;
	*size = 0;
	*len = 0;
	if (fstat(fd, &sb) != 0) {
		host->error(inst, "dotenv", "cannot stat dotenv file %s: %s",
			    path, strerror(errno));
		return KW_ERR_IO;
	}
	if (sb.st_size > ENV_DOTENV_MAX)
		goto too_large;
	/* One byte more than the file holds, to notice that it grew. */
	*size = (size_t)sb.st_size + 1;
	*buf = host->secure_alloc(*size);
	if (*buf == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	while (*len < *size) {
		got = read(fd, *buf + *len, *size - *len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			host->error(inst, "dotenv",
				    "cannot read dotenv file %s: %s", path,
				    strerror(errno));
			return KW_ERR_IO;
		}
		if (got == 0)
			return KW_OK;
		*len += (size_t)got;
	}
	if (*len <= ENV_DOTENV_MAX) {
		host->error(inst, "dotenv",
			    "dotenv file %s changed while it was read", path);
		return KW_ERR_IO;
	}
too_large:
	host->error(inst, "dotenv", "dotenv file %s is larger than 1 MiB",
		    path);
	return KW_ERR_CONFIG;
}

static KW_WARN_UNUSED kw_status env_load_dotenv(struct env_state *st,
						kw_instance *inst,
						const char *path)
{
	const kw_host *host = st->host;
	char *buf = NULL, err[4200];
	size_t size = 0, len;
	int fd = -1;
	kw_status rc;

	/* It reports its own refusals, saying how to fix the file; a file
	 * that is not there is ours to judge. */
	rc = host->open_private(inst, "dotenv", path, &fd);
	if (rc == KW_ERR_NOTFOUND && st->use_environ) {
		st->missing = path;
		rc = KW_OK;
		goto out;
	}
	if (rc == KW_ERR_NOTFOUND) {
		host->error(inst, "dotenv",
			    "dotenv file %s does not exist; with environment "
			    "= false it is the only source",
			    path);
		rc = KW_ERR_CONFIG;
	}
	if (rc != KW_OK)
		goto out;
	rc = env_read_dotenv(st, inst, path, fd, &buf, &size, &len);
	if (rc != KW_OK)
		goto out;
	rc = env_parse_dotenv(st, path, buf, len, err, sizeof(err));
	if (rc != KW_OK) {
		host->error(inst, "dotenv", "%s", err);
		goto out;
	}
	st->path = path;
out:
	if (buf != NULL) {
		host->wipe(buf, size);
		host->secure_free(buf, size);
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

static KW_WARN_UNUSED kw_status env_load_vars(struct env_state *st,
					      kw_instance *inst)
{
	const kw_host *host = st->host;
	const char *provider, *var;
	struct env_map *grown;
	kw_status rc;

	for (size_t i = 0;; i++) {
		rc = host->setting_map(inst, "vars", i, &provider, &var);
		if (rc == KW_ERR_NOTFOUND)
			return KW_OK;
		if (rc != KW_OK) {
			host->error(inst, "vars", "cannot read the setting");
			return rc;
		}
		/* The name alone: a key pasted here by mistake must not
		 * reach an error message. */
		if (!env_is_name(var, strlen(var))) {
			host->error(inst, "vars",
				    "variable name for provider \"%s\" is not "
				    "a valid environment variable name (use "
				    "letters, digits and '_', not starting "
				    "with a digit)",
				    provider);
			return KW_ERR_CONFIG;
		}
		grown = realloc(st->map, (i + 1) * sizeof(*st->map));
		if (grown == NULL) {
			host->error(inst, NULL, "out of memory");
			return KW_ERR_NOMEM;
		}
		st->map = grown;
		st->map[i].provider = provider;
		st->map[i].var = var;
		st->nmap = i + 1;
	}
}

static void env_free(struct env_state *st)
{
	if (st == NULL)
		return;
	if (st->store != NULL) {
		st->host->wipe(st->store, st->store_len);
		st->host->secure_free(st->store, st->store_len);
	}
	free(st->vars);
	free(st->map);
	free(st);
}

static kw_status env_open(const kw_host *host, kw_instance *inst,
			  void **state)
{
	struct env_state *st;
	const char *path;
	kw_status rc;

	*state = NULL;
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		host->error(inst, NULL, "out of memory");
		return KW_ERR_NOMEM;
	}
	st->host = host;
	rc = env_load_vars(st, inst);
	if (rc != KW_OK)
		goto out;
	if (host->setting_bool(inst, "environment", &st->use_environ) !=
	    KW_OK)
		st->use_environ = true;
	rc = host->setting_string(inst, "dotenv", &path);
	if (rc == KW_OK) {
		rc = env_load_dotenv(st, inst, path);
	} else if (rc == KW_ERR_NOTFOUND && !st->use_environ) {
		host->error(inst, "environment",
			    "with environment = false, a dotenv file is the "
			    "only source: set dotenv");
		rc = KW_ERR_CONFIG;
	} else if (rc == KW_ERR_NOTFOUND) {
		rc = KW_OK;
	}
	if (rc != KW_OK)
		goto out;
	*state = st;
	st = NULL;
out:
	env_free(st);
	return rc;
}

static void env_close(void *state)
{
	env_free(state);
}

static kw_status env_check(void *state, kw_reply *r)
{
	const struct env_state *st = state;

	if (st->path != NULL && !st->use_environ)
		st->host->reply_detail(r, "dotenv %s only: %zu variable%s",
				       st->path, st->nvars,
				       st->nvars == 1 ? "" : "s");
	else if (st->path != NULL)
		st->host->reply_detail(r, "dotenv %s: %zu variable%s",
				       st->path, st->nvars,
				       st->nvars == 1 ? "" : "s");
	else if (st->missing != NULL)
		st->host->reply_detail(r, "environment only: dotenv %s does "
				       "not exist",
				       st->missing);
	else
		st->host->reply_detail(r, "environment only");
	return KW_OK;
}

/* The variable that holds provider's key, or NULL when no valid name can
 * be made from it.  buf holds a name made from the provider. */
static const char *env_var_for(const struct env_state *st,
			       const char *provider, char *buf, size_t size)
{
	static const char suffix[] = "_API_KEY";
	size_t n = strlen(provider);

	for (size_t i = 0; i < st->nmap; i++)
		if (strcmp(st->map[i].provider, provider) == 0)
			return st->map[i].var;
	if (n == 0 || n + sizeof(suffix) > size)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char c = provider[i];

		buf[i] = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A')
			 : c == '-' || c == '.' ? '_' : c;
	}
	memcpy(buf + n, suffix, sizeof(suffix));
	return env_is_name(buf, n + sizeof(suffix) - 1) ? buf : NULL;
}

static kw_status env_lookup(void *state, const kw_query *q)
{
	const struct env_state *st = state;
	const kw_host *host = st->host;
	const struct env_entry *e = NULL;
	const char *var, *value;
	char buf[ENV_NAME_MAX];
	kw_status rc;

	var = env_var_for(st, q->provider, buf, sizeof(buf));
	if (var == NULL) {
		host->reply_detail(q->reply,
				   "no environment variable name can be made "
				   "from this provider; map it in vars");
		return KW_ERR_NOTFOUND;
	}
	value = st->use_environ ? getenv(var) : NULL;
	if (value != NULL && value[0] != '\0') {
		rc = host->reply_secret(q->reply, value, strlen(value));
		if (rc == KW_OK)
			host->reply_detail(q->reply, "$%s from the environment",
					   var);
		return rc;
	}
	/* An empty variable carries no key: let the file answer. */
	if (st->nvars > 0)
		e = bsearch(var, st->vars, st->nvars, sizeof(*st->vars),
			    env_entry_find);
	if (e != NULL && e->value_len > 0) {
		rc = host->reply_secret(q->reply, e->value, e->value_len);
		if (rc == KW_OK)
			host->reply_detail(q->reply, "$%s from %s", var,
					   st->path);
		return rc;
	}
	if (value != NULL)
		host->reply_detail(q->reply, "$%s is set but empty", var);
	else if (e != NULL)
		host->reply_detail(q->reply, "$%s is set but empty in %s", var,
				   st->path);
	else if (st->path != NULL && !st->use_environ)
		host->reply_detail(q->reply, "$%s is not set in %s", var,
				   st->path);
	else if (st->path != NULL)
		host->reply_detail(q->reply,
				   "$%s is not set in the environment or in %s",
				   var, st->path);
	else if (st->missing != NULL)
		host->reply_detail(q->reply,
				   "$%s is not set (dotenv %s does not exist)",
				   var, st->missing);
	else
		host->reply_detail(q->reply, "$%s is not set", var);
	return KW_ERR_NOTFOUND;
}

/* Whether env_var_for() makes name from some provider: upper-case letters,
 * digits and '_' before "_API_KEY", a valid name. */
static bool env_is_made_name(const char *name, size_t len)
{
	static const char suffix[] = "_API_KEY";
	size_t n = sizeof(suffix) - 1;

	if (len <= n || memcmp(name + len - n, suffix, n) != 0)
		return false;
	for (size_t i = 0; i < len - n; i++) {
		char c = name[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return env_is_name(name, len);
}

/*
 * The variables this backend may hand out: every name of `vars`, every
 * name it makes from a provider's when it reads the environment, and every
 * name the dotenv file sets (a program run without them must not find
 * them in its environment either).
 */
static bool env_reads_env(void *state, const char *name, size_t len)
{
	const struct env_state *st = state;
	size_t lo = 0, hi = st->nvars, mid;
	int c;

	for (size_t i = 0; i < st->nmap; i++)
		if (env_name_cmp(st->map[i].var, strlen(st->map[i].var), name,
				 len) == 0)
			return true;
	if (st->use_environ && env_is_made_name(name, len))
		return true;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = env_name_cmp(name, len, st->vars[mid].name,
				 st->vars[mid].name_len);
		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

static const kw_setting_spec env_settings[] = {
	{ "vars", KW_SETTING_STRMAP, 0 },
	{ "dotenv", KW_SETTING_PATH, 0 },
	{ "environment", KW_SETTING_BOOL, 0 },
	{ NULL, 0, 0 }
};

static const struct kw_module env_module = {
	KW_MODULE_HEADER,
	.name = "env",
	.description = "API keys from the environment or a private dotenv file",
	.caps = KW_CAP_LOOKUP,
	.settings = env_settings,
	.open = env_open,
	.close = env_close,
	.check = env_check,
	.lookup = env_lookup,
	.reads_env = env_reads_env,
};

KW_MODULE_EXPORT(env_module)
