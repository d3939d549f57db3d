/*
 * config.c - reading keyway.conf.
 *
 * libconfig parses the text of the file and of the files it includes,
 * which are read here; this file decides what it means.  Everything
 * is checked before anything is opened: unknown settings, wrong types,
 * modules that will not load, chains that name no backend, controls that do
 * not parse.  Every problem is reported as "file:line: message" and loading
 * goes on, so that `keyway check` can list them all; kw_open() refuses the
 * file if there was even one (fail closed).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct loader {
	struct kw_ctx *ctx;
	struct kwi_diag *d;
};

/*
 * A setting's file: NULL for the main file, else the path of the included
 * file, which the context owns.
 */
static const char *resolve_source(struct kw_ctx *ctx, const char *f)
{
	return f != NULL ? f : ctx->path;
}

const char *kwi_source_path(struct kw_ctx *ctx, const config_setting_t *s)
{
	return resolve_source(ctx, config_setting_source_file(s));
}

static const char *src_file(const struct loader *l, const config_setting_t *s)
{
	return kwi_source_path(l->ctx, s);
}

static void problem(struct loader *l, kw_status st, const config_setting_t *s,
		    const char *fmt, ...) KW_PRINTF(4, 5);

static void problem(struct loader *l, kw_status st, const config_setting_t *s,
		    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	kwi_vdiag(l->d, st, src_file(l, s), (int)config_setting_source_line(s),
		  fmt, ap);
	va_end(ap);
}

static const char *type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_GROUP:
		return "a group";
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a number";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	}
	return "nothing";
}

/*
 * The configuration file and the files it includes: each opened once,
 * checked on the descriptor that is then read, and put together here into
 * the one text libconfig parses.  libconfig 1.5 opens an @include by name
 * itself, after the checks could be made; so every line its scanner would
 * take for an @include is replaced by the file's text first, and a map
 * from lines of the whole back to lines of each file keeps every message
 * and every setting at its own file:line.
 */

#define INCLUDE_DEPTH 10              /* as libconfig's own limit */
#define INCLUDE_MAX 256               /* files included, in all */
#define CONFIG_FILE_MAX (1024 * 1024) /* per file */
#define CONFIG_TEXT_MAX (8 * CONFIG_FILE_MAX) /* all put together */

/* Where a run of lines of the whole text comes from. */
struct seg {
	unsigned start;      /* first line of the whole text */
	const char *file;    /* NULL: the main file */
	unsigned first;      /* its line in that file */
};

struct text {
	char *buf;
	size_t len, size;
	unsigned lines;      /* lines begun so far, counting from 1 */
	struct seg *segs;
	size_t nsegs;
	enum { SCAN_CODE, SCAN_COMMENT, SCAN_STRING } state;
	struct stat open[INCLUDE_DEPTH + 1]; /* files being read, outermost
					      * first */
	int depth;
	unsigned includes;   /* @include lines read so far */
	bool too_big;        /* text_put() failed for CONFIG_TEXT_MAX */
};

static bool text_put(struct text *t, const char *s, size_t n)
{
	if (t->len + n > CONFIG_TEXT_MAX) {
		t->too_big = true;
		return false;
	}
	if (t->len + n + 1 > t->size) {
		size_t size = t->size != 0 ? t->size : 4096;
		char *grown;

		while (t->len + n + 1 > size)
			size *= 2;
		grown = realloc(t->buf, size);
		if (grown == NULL)
			return false;
		t->buf = grown;
		t->size = size;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
	for (size_t i = 0; i < n; i++)
		t->lines += s[i] == '\n';
	return true;
}

/* Lines of the whole text from here on come from file, line `first` on. */
static bool text_from(struct text *t, const char *file, unsigned first)
{
	struct seg *grown;

	if (t->nsegs > 0 && t->segs[t->nsegs - 1].start == t->lines)
		t->nsegs--;
	grown = realloc(t->segs, (t->nsegs + 1) * sizeof(*grown));
	if (grown == NULL)
		return false;
	t->segs = grown;
	grown[t->nsegs].start = t->lines;
	grown[t->nsegs].file = file;
	grown[t->nsegs].first = first;
	t->nsegs++;
	return true;
}

/* The file and line that line `line` of the whole text comes from. */
static const char *text_origin(const struct text *t, unsigned line,
			       unsigned *out)
{
	const struct seg *s = NULL;
	size_t lo = 0, hi = t->nsegs;

	/* The last run that starts at or before it: runs are in order. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->segs[mid].start <= line)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0)
		s = &t->segs[lo - 1];
	if (s == NULL || line == 0) {
		*out = line;
		return NULL;
	}
	*out = s->first + (line - s->start);
	return s->file;
}

/* Read all of fd, at most CONFIG_FILE_MAX bytes. */
static kw_status read_whole(int fd, char **out, size_t *outlen)
{
	size_t len = 0, size = 4096;
	char *buf = malloc(size), *grown;
	ssize_t n;

	*out = NULL;
	if (buf == NULL)
		return KW_ERR_NOMEM;
	for (;;) {
		if (len == size) {
			if (size > CONFIG_FILE_MAX) {
				free(buf);
				return KW_ERR_CONFIG;
			}
			grown = realloc(buf, size * 2);
			if (grown == NULL) {
				free(buf);
				return KW_ERR_NOMEM;
			}
			buf = grown;
			size *= 2;
		}
		n = read(fd, buf + len, size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return KW_ERR_IO;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CONFIG_FILE_MAX) {
		free(buf);
		return KW_ERR_CONFIG;
	}
	*out = buf;
	*outlen = len;
	return KW_OK;
}

/* The context keeps the paths of included files for as long as settings
 * name them, each once: returns the path kept (path itself, or the same
 * name kept before, path then freed), or NULL when out of memory. */
static char *keep_source(struct kw_ctx *ctx, char *path)
{
	struct kwi_path *grown;

	for (size_t i = 0; i < ctx->nsources; i++) {
		if (strcmp(ctx->sources[i].value, path) == 0) {
			free(path);
			return ctx->sources[i].value;
		}
	}
	grown = realloc(ctx->sources, (ctx->nsources + 1) * sizeof(*grown));
	if (grown == NULL)
		return false;
	ctx->sources = grown;
	grown[ctx->nsources].name = path;
	grown[ctx->nsources].value = path;
	ctx->nsources++;
	return path;
}

/*
 * Open one file of the configuration and check what was opened: a regular
 * file, owned by root or the caller, not writable by group or others.
 * `from`:`line` is the @include that names it; NULL for the main file.
 * Returns the descriptor, or -1 with the problem reported.
 */
static int open_file(struct loader *l, const char *path, const char *from,
		     unsigned line, struct stat *st)
{
	int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	const char *what = from == NULL ? "configuration"
					: "included configuration";
	char why[256];
	int fd;

	/* The caller names the main file, and a link to it is theirs to
	 * make; an included file is named in a directory nobody checks, so
	 * a link there could lead anywhere. */
	if (from != NULL)
		flags |= O_NOFOLLOW;
	fd = open(path, flags);
	if (fd < 0) {
		int e = errno;

		if (from == NULL)
			kwi_diag(l->d, e == ENOENT ? KW_ERR_CONFIG : KW_ERR_IO,
				 path, 0, "cannot open configuration: %s",
				 strerror(e));
		else if (e == ELOOP)
			kwi_diag(l->d, KW_ERR_CONFIG, from, (int)line,
				 "cannot include %s: it is a symbolic link; "
				 "include the file itself",
				 path);
		else
			kwi_diag(l->d, e == ENOENT ? KW_ERR_CONFIG : KW_ERR_IO,
				 from, (int)line, "cannot include %s: %s", path,
				 strerror(e));
		return -1;
	}
	if (fstat(fd, st) != 0) {
		kwi_diag(l->d, KW_ERR_IO, path, 0, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		if (from == NULL)
			kwi_diag(l->d, KW_ERR_CONFIG, path, 0,
				 "configuration is not a regular file");
		else
			kwi_diag(l->d, KW_ERR_CONFIG, from, (int)line,
				 "cannot include %s: it is %s, not a regular "
				 "file",
				 path,
				 S_ISDIR(st->st_mode) ? "a directory"
				 : S_ISFIFO(st->st_mode) ? "a FIFO"
							 : "a special file");
		close(fd);
		return -1;
	}
	if (!kwi_stat_trusted(st, false, why, sizeof(why))) {
		if (st->st_uid != 0 && st->st_uid != geteuid())
			kwi_diag(l->d, KW_ERR_PERM, path, 0,
				 "refusing to read the %s: it is %s (chown %u "
				 "%s)",
				 what, why, (unsigned)geteuid(), path);
		else
			kwi_diag(l->d, KW_ERR_PERM, path, 0,
				 "refusing to read the %s: it is %s (chmod go-w "
				 "%s)",
				 what, why, path);
		close(fd);
		return -1;
	}
	return fd;
}

static bool expand(struct loader *l, struct text *t, const char *file,
		   const char *buf, size_t len);

/* Put the file that `spelled` names, included at from:line, in its
 * place. */
static bool include_file(struct loader *l, struct text *t, const char *from,
			 unsigned line, const char *spelled)
{
	const char *at = resolve_source(l->ctx, from);
	char *path = NULL, *buf = NULL, *kept;
	bool ok = false;
	struct stat st;
	size_t len = 0;
	kw_status rc;
	int fd;

	if (spelled[0] == '/')
		path = strdup(spelled);
	else if (asprintf(&path, "%s/%s", l->ctx->dir, spelled) < 0)
		path = NULL;
	kept = path != NULL ? keep_source(l->ctx, path) : NULL;
	if (kept == NULL) {
		free(path);
		kwi_diag(l->d, KW_ERR_NOMEM, at, (int)line, "out of memory");
		return false;
	}
	path = kept;
	if (++t->includes > INCLUDE_MAX) {
		kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
			 "cannot include %s: more than %d files are included "
			 "in all",
			 path, INCLUDE_MAX);
		return false;
	}
	if (t->depth == INCLUDE_DEPTH) {
		kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
			 "cannot include %s: files include one another more "
			 "than %d deep",
			 path, INCLUDE_DEPTH);
		return false;
	}
	fd = open_file(l, path, at, line, &st);
	if (fd < 0)
		return false;
	for (int i = 0; i <= t->depth; i++) {
		if (t->open[i].st_dev == st.st_dev &&
		    t->open[i].st_ino == st.st_ino) {
			kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
				 "cannot include %s: it is already being "
				 "read (an @include loop)",
				 path);
			goto out;
		}
	}
	rc = read_whole(fd, &buf, &len);
	if (rc != KW_OK) {
		if (rc == KW_ERR_CONFIG)
			kwi_diag(l->d, rc, path, 0,
				 "configuration file larger than 1 MiB");
		else
			kwi_diag(l->d, rc, path, 0, "%s",
				 rc == KW_ERR_NOMEM ? "out of memory"
						    : strerror(errno));
		goto out;
	}
	t->open[++t->depth] = st;
	ok = expand(l, t, path, buf, len);
	t->depth--;
	if (ok && t->state != SCAN_CODE) {
		kwi_diag(l->d, KW_ERR_CONFIG, path, 0,
			 "the file ends inside %s",
			 t->state == SCAN_STRING ? "a string (a missing \")"
						 : "a /* comment */");
		ok = false;
	}
out:
	free(buf);
	close(fd);
	return ok;
}

/*
 * If p starts a line that libconfig's scanner reads as an include,
 * `^[ \t]*@include[ \t]+"NAME"`, set *name (malloc'd, with \\ and \"
 * unescaped) and *after past the closing quote.  False with *name NULL
 * when it does not; false with *name set to "" when the name is bad.
 */
static bool is_include(const char *p, const char *end, char **name,
		       const char **after)
{
	size_t n = 0;
	char *out;

	*name = NULL;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (end - p < 9 || memcmp(p, "@include", 8) != 0 ||
	    (p[8] != ' ' && p[8] != '\t'))
		return false;
	p += 8;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p == end || *p != '"')
		return false;
	p++;
	out = malloc((size_t)(end - p) + 1);
	if (out == NULL)
		return false;
	*name = out;
	for (; p < end && *p != '"'; p++) {
		if (*p == '\\' && p + 1 < end && (p[1] == '\\' || p[1] == '"'))
			p++;
		else if (*p == '\\' || *p == '\n' || *p == '\r')
			break;
		out[n++] = *p;
	}
	if (p == end || *p != '"' || n == 0) {
		out[0] = '\0';
		return false;
	}
	out[n] = '\0';
	*after = p + 1;
	return true;
}

/* Whether only blanks and comments follow on p's line. */
static bool only_comment(const char *p, const char *end)
{
	for (;;) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
			p++;
		if (p == end || *p == '\n' || *p == '#' ||
		    (p[0] == '/' && p + 1 < end && p[1] == '/'))
			return true;
		if (!(p[0] == '/' && p + 1 < end && p[1] == '*'))
			return false;
		/* A comment that ends on the line; one that goes on past
		 * it is read as such. */
		for (p += 2; p < end && *p != '\n' &&
			     !(p[0] == '*' && p + 1 < end && p[1] == '/');
		     p++)
			;
		if (p == end || *p == '\n')
			return true;
		p += 2;
	}
}

/*
 * Append buf, the text of `file` (NULL: the main file), replacing each
 * line libconfig would read as an @include with the file it names.  The
 * scanner's state carries on from file to file, as libconfig's does.
 */
static bool expand(struct loader *l, struct text *t, const char *file,
		   const char *buf, size_t len)
{
	const char *at = resolve_source(l->ctx, file);
	const char *p = buf, *end = buf + len, *nul;
	unsigned line = 1;
	bool bol = true;

	nul = memchr(buf, '\0', len);
	if (nul != NULL) {
		for (const char *q = buf; q < nul; q++)
			line += *q == '\n';
		kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
			 "a NUL byte: this is not a configuration file");
		return false;
	}
	if (!text_from(t, file, 1))
		goto nomem;
	while (p < end) {
		size_t n = 1;

		if (bol && t->state == SCAN_CODE) {
			const char *after = NULL;
			char *name = NULL;
			bool ok;

			if (is_include(p, end, &name, &after)) {
				if (!only_comment(after, end)) {
					free(name);
					kwi_diag(l->d, KW_ERR_CONFIG, at,
						 (int)line,
						 "@include: only a comment may "
						 "follow the file name on its "
						 "line");
					return false;
				}
				ok = include_file(l, t, file, line, name);
				free(name);
				if (!ok)
					return false;
				/* The rest of the line goes on after the
				 * included text, as libconfig's scanner
				 * goes back to it. */
				if (t->len > 0 && t->buf[t->len - 1] != '\n' &&
				    !text_put(t, "\n", 1))
					goto nomem;
				if (!text_from(t, file, line))
					goto nomem;
				p = after;
				bol = false;
				continue;
			}
			if (name != NULL) {
				free(name);
				kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
					 "@include: the file name must be "
					 "one line, in double quotes, with "
					 "only \\\" and \\\\ escaped");
				return false;
			}
		}
		switch (t->state) {
		case SCAN_CODE:
			if (p[0] == '"') {
				t->state = SCAN_STRING;
			} else if (p[0] == '/' && p + 1 < end && p[1] == '*') {
				t->state = SCAN_COMMENT;
				n = 2;
			} else if (p[0] == '#' ||
				   (p[0] == '/' && p + 1 < end && p[1] == '/')) {
				const char *nl = memchr(p, '\n',
							(size_t)(end - p));

				n = (size_t)((nl != NULL ? nl : end) - p);
			}
			break;
		case SCAN_COMMENT:
			if (p[0] == '*' && p + 1 < end && p[1] == '/') {
				t->state = SCAN_CODE;
				n = 2;
			}
			break;
		case SCAN_STRING:
			if (p[0] == '\\' && p + 1 < end &&
			    (p[1] == '"' || p[1] == '\\'))
				n = 2;
			else if (p[0] == '"')
				t->state = SCAN_CODE;
			break;
		}
		if (!text_put(t, p, n))
			goto nomem;
		bol = p[n - 1] == '\n';
		line += bol;
		p += n;
	}
	return true;
nomem:
	if (t->too_big)
		kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
			 "the configuration and the files it includes come "
			 "to more than 8 MiB");
	else
		kwi_diag(l->d, KW_ERR_NOMEM, at, (int)line, "out of memory");
	return false;
}

/* ---- what libconfig's "syntax error" was about ---- */

enum tok_kind { TOK_END, TOK_NAME, TOK_STRING, TOK_NUMBER, TOK_PUNCT,
		TOK_OTHER };

struct tok {
	const char *start;
	size_t len;
	unsigned line;       /* where it ends, as libconfig counts */
	enum tok_kind kind;
};

static bool is_name_char(char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '*' ||
	       (!first && ((c >= '0' && c <= '9') || c == '-' || c == '_'));
}

/* The next token of libconfig's language from *pp, roughly as its scanner
 * cuts them (close enough to point at one). */
static void next_token(const char **pp, const char *end, unsigned *line,
		       struct tok *tk)
{
	const char *p = *pp;

	tk->kind = TOK_END;
	while (p < end) {
		if (*p == '\n') {
			++*line;
			p++;
		} else if (*p == ' ' || *p == '\t' || *p == '\r' ||
			   *p == '\f') {
			p++;
		} else if (*p == '#' ||
			   (p[0] == '/' && p + 1 < end && p[1] == '/')) {
			while (p < end && *p != '\n')
				p++;
		} else if (p[0] == '/' && p + 1 < end && p[1] == '*') {
			for (p += 2; p < end && !(p[0] == '*' && p + 1 < end &&
						  p[1] == '/');
			     p++)
				*line += *p == '\n';
			p = p < end ? p + 2 : end;
		} else {
			break;
		}
	}
	tk->start = p;
	if (p == end)
		goto out;
	if (*p == '"') {
		tk->kind = TOK_STRING;
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < end &&
			    (p[1] == '"' || p[1] == '\\'))
				p++;
			*line += *p == '\n';
		}
		p = p < end ? p + 1 : end;
	} else if (is_name_char(*p, true)) {
		tk->kind = TOK_NAME;
		while (p < end && is_name_char(*p, false))
			p++;
	} else if ((*p >= '0' && *p <= '9') ||
		   ((*p == '-' || *p == '+' || *p == '.') && p + 1 < end &&
		    ((p[1] >= '0' && p[1] <= '9') || p[1] == '.'))) {
		tk->kind = TOK_NUMBER;
		for (p++; p < end && ((*p >= '0' && *p <= '9') ||
				      (*p >= 'A' && *p <= 'Z') ||
				      (*p >= 'a' && *p <= 'z') || *p == '.' ||
				      ((*p == '-' || *p == '+') &&
				       (p[-1] == 'e' || p[-1] == 'E')));
		     p++)
			;
	} else {
		tk->kind = strchr("=:,;{}[]()", *p) != NULL ? TOK_PUNCT
							     : TOK_OTHER;
		p++;
	}
out:
	tk->len = (size_t)(p - tk->start);
	tk->line = *line;
	*pp = p;
}

/*
 * Does libconfig stop at line `line` when it reads text up to the end of
 * tk?  A text cut short elsewhere fails at its end, the line after.
 * libconfig 1.5 leaks a string it stops at, so a string is tried as a
 * number, which any place that refuses the one refuses too, unless it
 * follows a string (which it would continue).
 */
static bool fails_at(const char *text, const struct tok *tk,
		     const struct tok *prev, unsigned line, const char *msg)
{
	size_t n = (size_t)(tk->start + tk->len - text);
	char *cut;
	bool at = false;
	config_t cfg;

	if (tk->kind == TOK_STRING && prev->kind == TOK_STRING)
		return false;
	cut = malloc(n + 2);
	if (cut == NULL)
		return false;
	memcpy(cut, text, n);
	if (tk->kind == TOK_STRING) {
		/* As many newlines as the string holds keep the line. */
		size_t k = (size_t)(tk->start - text);

		for (const char *q = tk->start; q < tk->start + tk->len; q++)
			if (*q == '\n')
				cut[k++] = '\n';
		cut[k++] = '0';
		n = k;
	}
	cut[n] = '\n';
	cut[n + 1] = '\0';
	config_init(&cfg);
	config_set_include_dir(&cfg, "/dev/null");
	if (config_read_string(&cfg, cut) != CONFIG_TRUE)
		at = (unsigned)config_error_line(&cfg) == line &&
		     config_error_text(&cfg) != NULL &&
		     strcmp(config_error_text(&cfg), msg) == 0;
	config_destroy(&cfg);
	free(cut);
	return at;
}

static bool ends_value(const struct tok *tk)
{
	return tk->kind == TOK_STRING || tk->kind == TOK_NUMBER ||
	       (tk->kind == TOK_NAME &&
		(strncasecmp(tk->start, "true", tk->len) == 0 ||
		 strncasecmp(tk->start, "false", tk->len) == 0)) ||
	       (tk->kind == TOK_PUNCT && tk->len == 1 &&
		strchr("}])", tk->start[0]) != NULL);
}

/*
 * Finding the token costs a parse of the text up to each one tried: only
 * the last TRY_TOKENS tokens of the line are tried, and no more than
 * TRY_BYTES of text in all, so that a long line stays cheap; past that
 * the bare message is all there is.
 */
#define TRY_TOKENS 32
#define TRY_BYTES (4 * 1024 * 1024)
#define SHOW_NAME_MAX 32 /* a longer name may be a key */

/* A token, and the one before it, that fails_at() may try. */
struct try {
	struct tok tk, prev;
};

/*
 * libconfig says "syntax error" or "duplicate setting name" and a line.
 * Find the token it stopped at, by parsing the text cut after each token
 * of that line in turn, and say which it was.  Only punctuation and a
 * short name in a setting name's place (before '=' or ':') are shown:
 * anything else may be a key pasted in the wrong place, so only its kind
 * is named.
 */
static void describe_error(const char *text, unsigned line, const char *msg,
			   char *out, size_t outlen)
{
	const char *p = text, *end = text + strlen(text), *q;
	struct tok tk, prev = { NULL, 0, 0, TOK_END }, next;
	struct try ring[TRY_TOKENS];
	size_t nring = 0, first = 0, budget = TRY_BYTES;
	const char *hint = "";
	unsigned at = 1, nat;
	bool dup = strcmp(msg, "duplicate setting name") == 0;
	bool dropped = false, named;

	snprintf(out, outlen, "%s", msg);
	/* The tokens of the line, the last TRY_TOKENS of them kept. */
	for (;;) {
		next_token(&p, end, &at, &tk);
		if (tk.kind == TOK_END || tk.line > line)
			break;
		if (tk.line == line) {
			if (nring == TRY_TOKENS) {
				first = (first + 1) % TRY_TOKENS;
				nring--;
				dropped = true;
			}
			ring[(first + nring) % TRY_TOKENS] =
				(struct try){ tk, prev };
			nring++;
		}
		prev = tk;
	}
	for (size_t i = 0; i < nring; i++) {
		const struct try *t = &ring[(first + i) % TRY_TOKENS];
		size_t n = (size_t)(t->tk.start + t->tk.len - text);

		if (n > budget)
			return;
		budget -= n;
		if (fails_at(text, &t->tk, &t->prev, line, msg)) {
			/* The first token kept may not be the first that
			 * fails. */
			if (i == 0 && dropped)
				return;
			tk = t->tk;
			prev = t->prev;
			goto found;
		}
	}
	if (!dup && tk.kind == TOK_END && !dropped)
		snprintf(out, outlen,
			 "%s at the end of the file (a missing } or )?)", msg);
	return;
found:
	/* A name in a setting name's place is followed by '=' or ':'. */
	q = tk.start + tk.len;
	nat = tk.line;
	next_token(&q, end, &nat, &next);
	named = tk.kind == TOK_NAME && tk.len <= SHOW_NAME_MAX &&
		next.kind == TOK_PUNCT &&
		(next.start[0] == '=' || next.start[0] == ':');
	if (dup && named) {
		snprintf(out, outlen,
			 "duplicate setting \"%.*s\": it is already set in "
			 "this group",
			 (int)tk.len, tk.start);
		return;
	}
	/* What to look for, from the token before. */
	if (tk.kind == TOK_NAME && prev.kind == TOK_PUNCT &&
	    (prev.start[0] == '=' || prev.start[0] == ':'))
		hint = " (a string value must be in double quotes)";
	else if (tk.kind != TOK_PUNCT && tk.kind != TOK_OTHER &&
		 prev.kind == TOK_NAME && !ends_value(&prev))
		hint = " (a missing '=' before it?)";
	else if ((tk.kind != TOK_PUNCT || strchr("{([", tk.start[0])) &&
		 ends_value(&prev))
		hint = " (a missing ',' or ';' before it?)";
	if (tk.kind == TOK_PUNCT || tk.kind == TOK_OTHER || named)
		snprintf(out, outlen, "%s at '%.*s'%s", msg, (int)tk.len,
			 tk.start, hint);
	else if (prev.kind == TOK_PUNCT &&
		 (prev.start[0] == '=' || prev.start[0] == ':'))
		snprintf(out, outlen, "%s at a value after '%c'%s", msg,
			 prev.start[0], hint);
	else
		snprintf(out, outlen, "%s at %s%s", msg,
			 tk.kind == TOK_STRING ? "a string"
			 : tk.kind == TOK_NUMBER ? "a number"
						 : "an unquoted word",
			 hint);
}

/* Settings name the file and line they were written at, not their place
 * in the text put together. */
static void relocate(const struct text *t, config_setting_t *s)
{
	unsigned line;

	if (s->line != 0) {
		s->file = text_origin(t, s->line, &line);
		s->line = line;
	}
	if (config_setting_is_aggregate(s))
		for (int i = 0; i < config_setting_length(s); i++)
			relocate(t, config_setting_get_elem(s, i));
}

/*
 * Read the main file and what it includes into one text and parse it.
 * False with the problem reported.
 */
static bool read_config(struct loader *l, const char *path)
{
	struct kw_ctx *ctx = l->ctx;
	struct text t = { .lines = 1 };
	char *buf = NULL;
	bool ok = false;
	size_t len = 0;
	kw_status rc;
	int fd;

	fd = open_file(l, path, NULL, 0, &t.open[0]);
	if (fd < 0)
		return false;
	rc = read_whole(fd, &buf, &len);
	if (rc != KW_OK)
		kwi_diag(l->d, rc, path, 0, "%s",
			 rc == KW_ERR_CONFIG ? "configuration file larger than "
					       "1 MiB"
			 : rc == KW_ERR_NOMEM ? "out of memory"
					      : strerror(errno));
	close(fd);
	if (rc != KW_OK)
		goto out;
	if (!expand(l, &t, NULL, buf, len))
		goto out;
	/* Anything libconfig would still take for an include (none, unless
	 * it reads a line otherwise than expand() does) must fail, not be
	 * opened by name: nothing can be opened under /dev/null. */
	config_set_include_dir(&ctx->cfg, "/dev/null");
	if (config_read_string(&ctx->cfg, t.buf != NULL ? t.buf : "") !=
	    CONFIG_TRUE) {
		unsigned at = (unsigned)config_error_line(&ctx->cfg), line;
		const char *f = text_origin(&t, at, &line);
		const char *msg = config_error_text(&ctx->cfg);
		char what[256];

		if (msg == NULL)
			msg = "cannot parse";
		if (strcmp(msg, "syntax error") == 0 ||
		    strcmp(msg, "duplicate setting name") == 0)
			describe_error(t.buf != NULL ? t.buf : "", at, msg,
				       what, sizeof(what));
		else
			snprintf(what, sizeof(what), "%s", msg);
		kwi_diag(l->d, KW_ERR_CONFIG, resolve_source(ctx, f), (int)line,
			 "%s", what);
		goto out;
	}
	relocate(&t, config_root_setting(&ctx->cfg));
	ok = true;
out:
	free(buf);
	free(t.buf);
	free(t.segs);
	return ok;
}

/* ---- the keyway: { } section ---- */

static void load_ledger(struct loader *l, config_setting_t *g);

/* The variables the master keys come from: a program that runs others
 * (keyway exec) must not pass them on.  One slot for each master key, so
 * that none is left out however many there are. */
static void note_sensitive_env(struct loader *l, const config_setting_t *s)
{
	static const char *const always[] = { "KEYWAY_MASTER_KEY",
					      "API_KEY_ENCRYPTION_KEY",
					      "KEYWAY_PASSPHRASE" };
	struct kw_ctx *ctx = l->ctx;
	size_t n = 0, nalways = sizeof(always) / sizeof(always[0]);
	char **env;

	env = calloc(nalways + ctx->nmasters + 1, sizeof(*env));
	if (env == NULL)
		goto nomem;
	ctx->sensitive_env = env;
	for (size_t i = 0; i < nalways; i++)
		if ((env[n++] = strdup(always[i])) == NULL)
			goto nomem;
	for (size_t i = 0; i < ctx->nmasters; i++) {
		const struct kwi_master *m = &ctx->masters[i];
		bool known = m->source == KWI_KEY_FILE;

		for (size_t k = 0; k < n && !known; k++)
			known = strcmp(env[k], m->var) == 0;
		if (!known && (env[n++] = strdup(m->var)) == NULL)
			goto nomem;
	}
	return;
nomem:
	problem(l, KW_ERR_NOMEM, s, "out of memory");
}

/* keyway.master_key and keyway.old_master_keys. */
static void load_masters(struct loader *l, const config_setting_t *cur,
			 const config_setting_t *old)
{
	struct kw_ctx *ctx = l->ctx;
	size_t n = 1;

	if (old != NULL && !config_setting_is_list(old)) {
		problem(l, KW_ERR_CONFIG, old,
			"keyway.old_master_keys must be a list ( { source = "
			"...; }, ... )");
		return;
	}
	if (old != NULL)
		n += (size_t)config_setting_length(old);
	ctx->masters_size = n * sizeof(*ctx->masters);
	ctx->masters = kwi_secure_alloc(ctx->masters_size);
	if (ctx->masters == NULL) {
		problem(l, KW_ERR_NOMEM, cur, "out of memory");
		return;
	}
	if (kwi_master_parse(&ctx->masters[0], cur, src_file(l, cur),
			     "keyway.master_key", ctx->dir, l->d) != KW_OK)
		return;
	ctx->nmasters = 1;
	for (size_t i = 1; i < n; i++) {
		const config_setting_t *g =
			config_setting_get_elem(old, (unsigned)(i - 1));
		char what[64];

		snprintf(what, sizeof(what), "keyway.old_master_keys[%zu]",
			 i - 1);
		if (kwi_master_parse(&ctx->masters[i], g, src_file(l, g), what,
				     ctx->dir, l->d) != KW_OK)
			return;
		ctx->nmasters++;
	}
}

/* keyway.providers: { name: { prefix = "..."; min_length = N; ... }; } */
static void load_providers(struct loader *l, const config_setting_t *g)
{
	struct kw_ctx *ctx = l->ctx;
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"keyway.providers must be a group { name: { prefix = "
			"...; }; }");
		return;
	}
	n = config_setting_length(g);
	ctx->providers = calloc((size_t)n + 1, sizeof(*ctx->providers));
	if (ctx->providers == NULL) {
		problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *p = config_setting_get_elem(g, i);
		struct kwi_provider *pr = &ctx->providers[ctx->nproviders];
		const struct kwi_provider *builtin;
		const char *name = config_setting_name(p);
		long long v;

		if (!kwi_valid_provider(name)) {
			problem(l, KW_ERR_CONFIG, p,
				"keyway.providers: invalid provider name "
				"\"%s\" (lower-case letters, digits, '-', '_' "
				"and '.')",
				name);
			continue;
		}
		if (!config_setting_is_group(p)) {
			problem(l, KW_ERR_CONFIG, p,
				"keyway.providers.%s must be a group { prefix "
				"= ...; }",
				name);
			continue;
		}
		/* An entry for a built-in provider changes what it sets and
		 * keeps the rest. */
		builtin = kwi_builtin_provider(name);
		pr->name = strdup(name);
		pr->prefix = strdup(builtin != NULL ? builtin->prefix : "");
		pr->min_len = builtin != NULL ? builtin->min_len : 8;
		pr->max_len = builtin != NULL ? builtin->max_len : 4096;
		ctx->nproviders++;
		if (pr->name == NULL || pr->prefix == NULL) {
			problem(l, KW_ERR_NOMEM, p, "out of memory");
			return;
		}
		for (int k = 0; k < config_setting_length(p); k++) {
			const config_setting_t *s = config_setting_get_elem(p, k);
			const char *key = config_setting_name(s);
			int type = config_setting_type(s);

			if (strcmp(key, "prefix") == 0 &&
			    type == CONFIG_TYPE_STRING) {
				free(pr->prefix);
				pr->prefix = strdup(config_setting_get_string(s));
				if (pr->prefix == NULL) {
					problem(l, KW_ERR_NOMEM, s,
						"out of memory");
					return;
				}
				continue;
			}
			if ((strcmp(key, "min_length") == 0 ||
			     strcmp(key, "max_length") == 0) &&
			    (type == CONFIG_TYPE_INT ||
			     type == CONFIG_TYPE_INT64)) {
				v = config_setting_get_int64(s);
				if (v < 1 || v > 65536)
					problem(l, KW_ERR_CONFIG, s,
						"keyway.providers.%s.%s must "
						"be between 1 and 65536",
						name, key);
				else if (key[1] == 'i')
					pr->min_len = (size_t)v;
				else
					pr->max_len = (size_t)v;
				continue;
			}
			if (strcmp(key, "prefix") == 0 ||
			    strcmp(key, "min_length") == 0 ||
			    strcmp(key, "max_length") == 0)
				problem(l, KW_ERR_CONFIG, s,
					"keyway.providers.%s.%s must be %s",
					name, key,
					key[0] == 'p' ? "a string"
						      : "an integer");
			else
				problem(l, KW_ERR_CONFIG, s,
					"keyway.providers.%s: unknown setting "
					"\"%s\" (expected prefix, min_length "
					"or max_length)",
					name, key);
		}
		if (pr->min_len > pr->max_len)
			problem(l, KW_ERR_CONFIG, p,
				"keyway.providers.%s: min_length is above "
				"max_length",
				name);
	}
}

/* keyway.log: where host->log() lines go besides syslog. */
static void load_log(struct loader *l, const config_setting_t *g)
{
	static const struct {
		const char *word;
		int level;
	} levels[] = {
		{ "error", KW_LOG_ERR },
		{ "warning", KW_LOG_WARNING },
		{ "info", KW_LOG_INFO },
		{ "debug", KW_LOG_DEBUG },
	};
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"keyway.log must be a group { stderr = true; }");
		return;
	}
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		const char *v;
		size_t k;

		if (strcmp(name, "stderr") == 0) {
			if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
				problem(l, KW_ERR_CONFIG, s,
					"keyway.log.stderr must be true or "
					"false");
				continue;
			}
			l->ctx->log_stderr = config_setting_get_bool(s)
						     ? KWI_LOG_ALWAYS
						     : KWI_LOG_NEVER;
			continue;
		}
		if (strcmp(name, "level") == 0) {
			v = config_setting_get_string(s);
			for (k = 0; v != NULL && k < sizeof(levels) /
							     sizeof(levels[0]);
			     k++)
				if (strcmp(v, levels[k].word) == 0)
					break;
			if (v == NULL ||
			    k == sizeof(levels) / sizeof(levels[0])) {
				problem(l, KW_ERR_CONFIG, s,
					"keyway.log.level must be \"error\", "
					"\"warning\", \"info\" or \"debug\"");
				continue;
			}
			l->ctx->log_level = levels[k].level;
			continue;
		}
		problem(l, KW_ERR_CONFIG, s,
			"keyway.log: unknown setting \"%s\" (expected stderr "
			"or level)",
			name);
	}
}

static void load_keyway(struct loader *l, const config_setting_t *g)
{
	const config_setting_t *master = NULL, *old = NULL, *audit = NULL;
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g, "keyway must be a group { ... }");
		return;
	}
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);

		if (strcmp(name, "master_key") == 0) {
			master = s;
			continue;
		}
		if (strcmp(name, "old_master_keys") == 0) {
			old = s;
			continue;
		}
		if (strcmp(name, "providers") == 0) {
			load_providers(l, s);
			continue;
		}
		if (strcmp(name, "ledger") == 0) {
			load_ledger(l, (config_setting_t *)s);
			continue;
		}
		if (strcmp(name, "audit") == 0) {
			audit = s;
			continue;
		}
		if (strcmp(name, "log") == 0) {
			load_log(l, s);
			continue;
		}
		problem(l, KW_ERR_CONFIG, s,
			"keyway: unknown setting \"%s\" (expected master_key, "
			"old_master_keys, providers, ledger, audit or log)",
			name);
	}
	if (master != NULL) {
		load_masters(l, master, old);
		note_sensitive_env(l, master);
	}
	else if (old != NULL)
		problem(l, KW_ERR_CONFIG, old,
			"keyway.old_master_keys without keyway.master_key");
	/* The audit trail keys its fingerprints with the master key. */
	if (audit != NULL)
		(void)kwi_audit_parse(l->ctx, audit, src_file(l, audit), l->d);
}

/* ---- backends: { } ---- */

static const kw_setting_spec *find_spec(const struct kwi_module *m,
					const char *name)
{
	for (const kw_setting_spec *sp = m->desc->settings;
	     sp != NULL && sp->name != NULL; sp++)
		if (strcmp(sp->name, name) == 0)
			return sp;
	return NULL;
}

/* "vars, dotenv" for the message about an unknown setting. */
static void spec_list(const struct kw_instance *b, char *buf, size_t len)
{
	const struct kwi_module *m = b->module;
	size_t used = 0;

	buf[0] = '\0';
	if ((m->desc->caps & KW_CAP_SCOPED) && b->role == KW_INSTANCE_BACKEND)
		used += (size_t)snprintf(buf, len, "scope");
	for (const kw_setting_spec *sp = m->desc->settings;
	     sp != NULL && sp->name != NULL && used < len; sp++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
					 used > 0 ? ", " : "", sp->name);
	if (b->role == KW_INSTANCE_LEDGER && used < len)
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
					 used > 0 ? ", " : "",
					 "on_unavailable");
	if (buf[0] == '\0')
		snprintf(buf, len, "nothing but module");
}

static bool is_abs_or_make(struct loader *l, struct kw_instance *b,
			   const config_setting_t *s, const char *value)
{
	struct kwi_path *grown;
	char *abs;

	if (value[0] == '/')
		abs = strdup(value);
	else if (asprintf(&abs, "%s/%s", l->ctx->dir, value) < 0)
		abs = NULL;
	grown = abs != NULL ? realloc(b->paths,
				      (b->npaths + 1) * sizeof(*b->paths))
			    : NULL;
	if (grown == NULL) {
		free(abs);
		problem(l, KW_ERR_NOMEM, s, "out of memory");
		return false;
	}
	b->paths = grown;
	b->paths[b->npaths].name = config_setting_name(s);
	b->paths[b->npaths].value = abs;
	b->npaths++;
	return true;
}

static void check_setting(struct loader *l, struct kw_instance *b,
			  const config_setting_t *s, const kw_setting_spec *sp)
{
	const char *name = config_setting_name(s);
	int type = config_setting_type(s);

	switch (sp->type) {
	case KW_SETTING_STRING:
	case KW_SETTING_PATH:
		if (type != CONFIG_TYPE_STRING) {
			problem(l, KW_ERR_CONFIG, s,
				"%s: %s must be a string, not %s",
				b->label, name, type_name(type));
		} else if (sp->type == KW_SETTING_PATH) {
			const char *v = config_setting_get_string(s);

			if (v[0] == '\0')
				problem(l, KW_ERR_CONFIG, s,
					"%s: %s is empty", b->label,
					name);
			else
				is_abs_or_make(l, b, s, v);
		}
		break;
	case KW_SETTING_INT:
		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
			problem(l, KW_ERR_CONFIG, s,
				"%s: %s must be an integer, not %s",
				b->label, name, type_name(type));
		break;
	case KW_SETTING_BOOL:
		if (type != CONFIG_TYPE_BOOL)
			problem(l, KW_ERR_CONFIG, s,
				"%s: %s must be true or false, "
				"not %s",
				b->label, name, type_name(type));
		break;
	case KW_SETTING_STRMAP:
		if (type != CONFIG_TYPE_GROUP) {
			problem(l, KW_ERR_CONFIG, s,
				"%s: %s must be a group "
				"{ name = \"value\"; ... }, not %s",
				b->label, name, type_name(type));
			break;
		}
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *e =
				config_setting_get_elem(s, i);

			if (config_setting_type(e) != CONFIG_TYPE_STRING)
				problem(l, KW_ERR_CONFIG, e,
					"%s: %s.%s must be a "
					"string, not %s",
					b->label, name, config_setting_name(e),
					type_name(config_setting_type(e)));
		}
		break;
	default:
		problem(l, KW_ERR_MODULE, s,
			"%s: module \"%s\" declares %s with an "
			"unknown type",
			b->label, b->module->name, name);
	}
}

static void load_scope(struct loader *l, struct kw_instance *b,
		       const config_setting_t *s)
{
	static const char *const names[] = { NULL, "user", "org", "system" };
	const char *v = config_setting_get_string(s);

	if (!(b->module->desc->caps & KW_CAP_SCOPED)) {
		problem(l, KW_ERR_CONFIG, s,
			"%s: module \"%s\" takes no scope",
			b->label, b->module->name);
		return;
	}
	for (int k = KW_SCOPE_USER; v != NULL && k <= KW_SCOPE_SYSTEM; k++) {
		if (strcmp(v, names[k]) == 0) {
			b->scope = (kw_scope)k;
			return;
		}
	}
	problem(l, KW_ERR_CONFIG, s,
		"%s: scope must be \"user\", \"org\" or "
		"\"system\"",
		b->label);
}

/* ---- quotas ---- */

static bool parse_period(const config_setting_t *s, int64_t *period,
			 const char **word)
{
	static const struct {
		const char *name;
		int64_t seconds;
	} periods[] = {
		{ "minute", 60 }, { "hour", 3600 }, { "day", 86400 },
		{ "month", 0 },
	};

	if (config_setting_type(s) == CONFIG_TYPE_INT ||
	    config_setting_type(s) == CONFIG_TYPE_INT64) {
		*period = config_setting_get_int64(s);
		*word = NULL;
		return *period >= 1 && *period <= 366LL * 86400;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return false;
	for (size_t i = 0; i < sizeof(periods) / sizeof(periods[0]); i++) {
		if (strcmp(config_setting_get_string(s), periods[i].name) == 0) {
			*period = periods[i].seconds;
			*word = periods[i].name;
			return true;
		}
	}
	return false;
}

static bool load_quota(struct loader *l, struct kw_instance *b,
		       const config_setting_t *g, size_t index,
		       struct kwi_quota *q)
{
	const config_setting_t *limit = NULL, *period = NULL, *per = NULL;
	const char *word = NULL, *perword;
	bool ok = true;
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"%s: quota %zu must be a group { limit = ...; period = "
			"...; per = ...; }",
			b->label, index + 1);
		return false;
	}
	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);

		if (strcmp(name, "limit") == 0)
			limit = s;
		else if (strcmp(name, "period") == 0)
			period = s;
		else if (strcmp(name, "per") == 0)
			per = s;
		else {
			problem(l, KW_ERR_CONFIG, s,
				"%s: quota %zu: unknown setting \"%s\" "
				"(expected limit, period and per)",
				b->label, index + 1, name);
			ok = false;
		}
	}
	if (limit == NULL) {
		problem(l, KW_ERR_CONFIG, g, "%s: quota %zu has no limit",
			b->label, index + 1);
		ok = false;
	} else if ((config_setting_type(limit) != CONFIG_TYPE_INT &&
		    config_setting_type(limit) != CONFIG_TYPE_INT64) ||
		   config_setting_get_int64(limit) < 1) {
		problem(l, KW_ERR_CONFIG, limit,
			"%s: quota %zu: limit must be a whole number of "
			"requests, 1 or more",
			b->label, index + 1);
		ok = false;
	} else {
		q->limit = (uint64_t)config_setting_get_int64(limit);
	}
	if (period == NULL) {
		problem(l, KW_ERR_CONFIG, g, "%s: quota %zu has no period",
			b->label, index + 1);
		ok = false;
	} else if (!parse_period(period, &q->period, &word)) {
		problem(l, KW_ERR_CONFIG, period,
			"%s: quota %zu: period must be \"minute\", \"hour\", "
			"\"day\", \"month\" or a number of seconds (1 to "
			"31622400)",
			b->label, index + 1);
		ok = false;
	}
	q->per = KWI_PER_GLOBAL;
	perword = "global";
	if (per != NULL) {
		const char *v = config_setting_type(per) == CONFIG_TYPE_STRING
					? config_setting_get_string(per)
					: "";

		if (!kwi_per_parse(v, &q->per)) {
			problem(l, KW_ERR_CONFIG, per,
				"%s: quota %zu: per must be \"user\", \"org\", "
				"\"global\", \"provider\", \"user+provider\" "
				"or \"org+provider\"",
				b->label, index + 1);
			ok = false;
		}
		perword = v;
	}
	if (!ok)
		return false;
	if (word != NULL)
		snprintf(q->label, sizeof(q->label), "%llu/%s per %s",
			 (unsigned long long)q->limit, word, perword);
	else
		snprintf(q->label, sizeof(q->label), "%llu/%llds per %s",
			 (unsigned long long)q->limit, (long long)q->period,
			 perword);
	return true;
}

static void load_quotas(struct loader *l, struct kw_instance *b,
			const config_setting_t *s)
{
	int n;

	if (!config_setting_is_list(s) || config_setting_length(s) == 0) {
		problem(l, KW_ERR_CONFIG, s,
			"%s: quota must be a list ( { limit = ...; period = "
			"...; per = ...; }, ... )",
			b->label);
		return;
	}
	n = config_setting_length(s);
	b->quotas = calloc((size_t)n, sizeof(*b->quotas));
	if (b->quotas == NULL) {
		problem(l, KW_ERR_NOMEM, s, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++)
		if (load_quota(l, b, config_setting_get_elem(s, i), (size_t)i,
			       &b->quotas[b->nquotas]))
			b->nquotas++;
}

/* ---- one instance: a backend, or the ledger ---- */

/* Settings the host reads itself, by role. */
static bool host_setting(struct loader *l, struct kw_instance *b,
			 const config_setting_t *s, const char *name)
{
	if (b->role == KW_INSTANCE_LEDGER) {
		const char *v;

		if (strcmp(name, "on_unavailable") != 0)
			return false;
		v = config_setting_type(s) == CONFIG_TYPE_STRING
			    ? config_setting_get_string(s)
			    : "";
		if (strcmp(v, "allow") == 0)
			l->ctx->ledger_allow = true;
		else if (strcmp(v, "deny") != 0)
			problem(l, KW_ERR_CONFIG, s,
				"keyway.ledger: on_unavailable must be "
				"\"deny\" or \"allow\"");
		return true;
	}
	if (strcmp(name, "scope") == 0) {
		if (config_setting_type(s) == CONFIG_TYPE_STRING)
			load_scope(l, b, s);
		else
			problem(l, KW_ERR_CONFIG, s,
				"%s: scope must be a string, not %s", b->label,
				type_name(config_setting_type(s)));
		return true;
	}
	if (strcmp(name, "quota") == 0) {
		load_quotas(l, b, s);
		return true;
	}
	return false;
}

static void load_instance(struct loader *l, struct kw_instance *b,
			  config_setting_t *g)
{
	const config_setting_t *mod;
	char why[768], list[256];
	kw_status rc;
	int n;

	b->setting = g;
	b->ctx = l->ctx;
	b->file = src_file(l, g);
	b->line = (int)config_setting_source_line(g);
	b->diag = l->d;
	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"%s must be a group { module = ...; }", b->label);
		return;
	}
	mod = config_setting_get_member(g, "module");
	if (mod == NULL) {
		problem(l, KW_ERR_CONFIG, g, "%s: missing module", b->label);
		return;
	}
	if (config_setting_type(mod) != CONFIG_TYPE_STRING) {
		problem(l, KW_ERR_CONFIG, mod,
			"%s: module must be a string, not %s", b->label,
			type_name(config_setting_type(mod)));
		return;
	}
	rc = kwi_module_load(&l->ctx->modules, config_setting_get_string(mod),
			     &b->module, why, sizeof(why));
	if (rc != KW_OK) {
		problem(l, rc, mod, "%s: %s", b->label,
			rc == KW_ERR_NOMEM ? "out of memory" : why);
		return;
	}
	if (b->role == KW_INSTANCE_LEDGER &&
	    !(b->module->desc->caps & KW_CAP_LEDGER)) {
		problem(l, KW_ERR_CONFIG, mod,
			"keyway.ledger: module \"%s\" does not count quotas",
			b->module->name);
		return;
	}

	n = config_setting_length(g);
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);
		const kw_setting_spec *sp;

		if (s == mod || host_setting(l, b, s, name))
			continue;
		if ((sp = find_spec(b->module, name)) != NULL) {
			check_setting(l, b, s, sp);
		} else {
			spec_list(b, list, sizeof(list));
			problem(l, KW_ERR_CONFIG, s,
				"%s: unknown setting \"%s\" (module \"%s\" "
				"takes %s)",
				b->label, name, b->module->name, list);
		}
	}

	for (const kw_setting_spec *sp = b->module->desc->settings;
	     sp != NULL && sp->name != NULL; sp++)
		if ((sp->flags & KW_SETTING_REQUIRED) &&
		    config_setting_get_member(g, sp->name) == NULL)
			problem(l, KW_ERR_CONFIG, g,
				"%s: missing %s (module \"%s\" needs it)",
				b->label, sp->name, b->module->name);
	if (b->role == KW_INSTANCE_BACKEND &&
	    (b->module->desc->caps & KW_CAP_SCOPED) &&
	    config_setting_get_member(g, "scope") == NULL)
		problem(l, KW_ERR_CONFIG, g,
			"%s: missing scope (\"user\", \"org\" or \"system\")",
			b->label);
}

static bool set_label(struct kw_instance *b, const char *name,
		      kw_instance_role role)
{
	b->role = role;
	b->name = strdup(name);
	if (role == KW_INSTANCE_LEDGER)
		b->label = strdup("keyway.ledger");
	else if (asprintf(&b->label, "backend \"%s\"", name) < 0)
		b->label = NULL;
	return b->name != NULL && b->label != NULL;
}

static void load_ledger(struct loader *l, config_setting_t *g)
{
	struct kw_instance *b = calloc(1, sizeof(*b));

	if (b == NULL || !set_label(b, "ledger", KW_INSTANCE_LEDGER)) {
		if (b != NULL) {
			free(b->name);
			free(b->label);
		}
		free(b);
		problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	l->ctx->ledger = b;
	load_instance(l, b, g);
}

/* Quotas count in the ledger: one must be configured if any is set. */
static void check_quotas_have_ledger(struct loader *l)
{
	struct kw_ctx *ctx = l->ctx;

	if (ctx->ledger != NULL)
		return;
	for (size_t i = 0; i < ctx->nbackends; i++) {
		const struct kw_instance *b = &ctx->backends[i];
		const config_setting_t *q =
			b->nquotas > 0
				? config_setting_get_member(b->setting, "quota")
				: NULL;

		if (q != NULL)
			problem(l, KW_ERR_CONFIG, q,
				"%s: quotas count in a ledger: set "
				"keyway.ledger = { module = \"sqlite\"; path = "
				"\"...\"; }",
				b->label);
	}
}

static void load_backends(struct loader *l, config_setting_t *g)
{
	struct kw_ctx *ctx = l->ctx;
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"backends must be a group { name: { ... }; ... }");
		return;
	}
	n = config_setting_length(g);
	if (n == 0) {
		problem(l, KW_ERR_CONFIG, g, "backends: no backend declared");
		return;
	}
	ctx->backends = calloc((size_t)n, sizeof(*ctx->backends));
	if (ctx->backends == NULL) {
		problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(g, i);
		struct kw_instance *b = &ctx->backends[ctx->nbackends++];

		if (!set_label(b, config_setting_name(s),
			       KW_INSTANCE_BACKEND)) {
			problem(l, KW_ERR_NOMEM, s, "out of memory");
			return;
		}
		load_instance(l, b, s);
	}
}

/* ---- chains: { } ---- */

static struct kw_instance *find_backend(struct kw_ctx *ctx, const char *name)
{
	for (size_t i = 0; i < ctx->nbackends; i++)
		if (strcmp(ctx->backends[i].name, name) == 0)
			return &ctx->backends[i];
	return NULL;
}

static void load_entry(struct loader *l, struct kwi_chain *c, size_t i,
		       const config_setting_t *g)
{
	const config_setting_t *be = NULL, *ctl = NULL;
	struct kwi_entry *e = &c->entries[i];
	char why[256];
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"chain \"%s\": entry %zu must be a group "
			"{ backend = ...; control = ...; }",
			c->name, i + 1);
		return;
	}
	n = config_setting_length(g);
	for (int k = 0; k < n; k++) {
		const config_setting_t *s = config_setting_get_elem(g, k);
		const char *name = config_setting_name(s);

		if (strcmp(name, "backend") == 0)
			be = s;
		else if (strcmp(name, "control") == 0)
			ctl = s;
		else
			problem(l, KW_ERR_CONFIG, s,
				"chain \"%s\": entry %zu: unknown setting "
				"\"%s\" (expected backend and control)",
				c->name, i + 1, name);
	}

	if (be == NULL) {
		problem(l, KW_ERR_CONFIG, g,
			"chain \"%s\": entry %zu: missing backend", c->name,
			i + 1);
	} else if (config_setting_type(be) != CONFIG_TYPE_STRING) {
		problem(l, KW_ERR_CONFIG, be,
			"chain \"%s\": entry %zu: backend must be a string",
			c->name, i + 1);
	} else {
		const char *name = config_setting_get_string(be);

		e->backend = find_backend(l->ctx, name);
		if (e->backend == NULL)
			problem(l, KW_ERR_CONFIG, be,
				"chain \"%s\": unknown backend \"%s\"",
				c->name, name);
		else if (e->backend->module != NULL &&
			 e->backend->module->ops.lookup == NULL)
			problem(l, KW_ERR_CONFIG, be,
				"chain \"%s\": backend \"%s\" (module \"%s\") "
				"cannot look keys up",
				c->name, name, e->backend->module->name);
	}

	if (ctl == NULL) {
		problem(l, KW_ERR_CONFIG, g,
			"chain \"%s\": entry %zu: missing control (required, "
			"requisite, sufficient or optional)",
			c->name, i + 1);
	} else if (config_setting_type(ctl) != CONFIG_TYPE_STRING) {
		problem(l, KW_ERR_CONFIG, ctl,
			"chain \"%s\": entry %zu: control must be a string",
			c->name, i + 1);
	} else if (kwi_control_parse(config_setting_get_string(ctl),
				     c->n - i - 1, e, why,
				     sizeof(why)) != KW_OK) {
		problem(l, KW_ERR_CONFIG, ctl, "chain \"%s\": entry %zu: %s",
			c->name, i + 1, why);
	}
}

static void load_chains(struct loader *l, const config_setting_t *g)
{
	struct kw_ctx *ctx = l->ctx;
	int n;

	if (!config_setting_is_group(g)) {
		problem(l, KW_ERR_CONFIG, g,
			"chains must be a group { name = ( ... ); ... }");
		return;
	}
	n = config_setting_length(g);
	if (n == 0) {
		problem(l, KW_ERR_CONFIG, g, "chains: no chain declared");
		return;
	}
	ctx->chains = calloc((size_t)n, sizeof(*ctx->chains));
	if (ctx->chains == NULL) {
		problem(l, KW_ERR_NOMEM, g, "out of memory");
		return;
	}
	for (int i = 0; i < n; i++) {
		const config_setting_t *s = config_setting_get_elem(g, i);
		struct kwi_chain *c = &ctx->chains[ctx->nchains++];
		int len;

		c->name = strdup(config_setting_name(s));
		if (c->name == NULL) {
			problem(l, KW_ERR_NOMEM, s, "out of memory");
			return;
		}
		if (!config_setting_is_list(s)) {
			problem(l, KW_ERR_CONFIG, s,
				"chain \"%s\" must be a list ( { backend = "
				"...; control = ...; }, ... )",
				c->name);
			continue;
		}
		len = config_setting_length(s);
		if (len == 0) {
			problem(l, KW_ERR_CONFIG, s, "chain \"%s\" is empty",
				c->name);
			continue;
		}
		c->entries = calloc((size_t)len, sizeof(*c->entries));
		if (c->entries == NULL) {
			problem(l, KW_ERR_NOMEM, s, "out of memory");
			return;
		}
		c->n = (size_t)len;
		for (int k = 0; k < len; k++)
			load_entry(l, c, (size_t)k,
				   config_setting_get_elem(s, k));
		if (strcmp(c->name, "default") == 0)
			ctx->default_chain = c;
	}
}

kw_status kwi_config_load(struct kw_ctx *ctx, const char *path,
			  struct kwi_diag *d)
{
	struct loader l = { ctx, d };
	config_setting_t *root, *s;
	char *copy;
	int n;

	config_init(&ctx->cfg);
	ctx->path = strdup(path);
	copy = strdup(path);
	if (ctx->path == NULL || copy == NULL) {
		free(copy);
		kwi_diag(d, KW_ERR_NOMEM, path, 0, "out of memory");
		return d->first;
	}
	/* Relative paths in the file are taken against its directory, made
	 * absolute once here. */
	ctx->dir = realpath(dirname(copy), NULL);
	free(copy);
	if (ctx->dir == NULL) {
		kwi_diag(d, errno == ENOMEM ? KW_ERR_NOMEM : KW_ERR_CONFIG, path,
			 0, "cannot open configuration: %s", strerror(errno));
		return d->first;
	}

	if (!read_config(&l, path))
		return d->first;
	root = config_root_setting(&ctx->cfg);

	n = config_setting_length(root);
	for (int i = 0; i < n; i++) {
		s = config_setting_get_elem(root, i);
		const char *name = config_setting_name(s);

		if (strcmp(name, "keyway") == 0 ||
		    strcmp(name, "backends") == 0 ||
		    strcmp(name, "chains") == 0)
			continue;
		problem(&l, KW_ERR_CONFIG, s,
			"unknown setting \"%s\" (expected keyway, backends or "
			"chains)",
			name);
	}

	if ((s = config_setting_get_member(root, "keyway")) != NULL)
		load_keyway(&l, s);
	if ((s = config_setting_get_member(root, "backends")) != NULL)
		load_backends(&l, s);
	else
		kwi_diag(d, KW_ERR_CONFIG, path, 0, "no backends section");
	if ((s = config_setting_get_member(root, "chains")) != NULL)
		load_chains(&l, s);
	else
		kwi_diag(d, KW_ERR_CONFIG, path, 0, "no chains section");
	check_quotas_have_ledger(&l);
	return d->first;
}

void kwi_config_free(struct kw_ctx *ctx)
{
	for (size_t i = 0; i < ctx->nbackends; i++) {
		struct kw_instance *b = &ctx->backends[i];

		for (size_t k = 0; k < b->npaths; k++)
			free(b->paths[k].value);
		free(b->paths);
		free(b->name);
		free(b->label);
		free(b->quotas);
	}
	free(ctx->backends);
	if (ctx->ledger != NULL) {
		for (size_t k = 0; k < ctx->ledger->npaths; k++)
			free(ctx->ledger->paths[k].value);
		free(ctx->ledger->paths);
		free(ctx->ledger->name);
		free(ctx->ledger->label);
		free(ctx->ledger);
	}
	for (size_t i = 0; i < ctx->nchains; i++) {
		free(ctx->chains[i].entries);
		free(ctx->chains[i].name);
	}
	free(ctx->chains);
	for (size_t i = 0; i < ctx->nsources; i++)
		free(ctx->sources[i].value);
	free(ctx->sources);
	kwi_module_unload_all(ctx->modules);
	kwi_audit_free(ctx);
	for (size_t i = 0;
	     ctx->sensitive_env != NULL && ctx->sensitive_env[i] != NULL; i++)
		free(ctx->sensitive_env[i]);
	free(ctx->sensitive_env);
	kwi_keyrings_free(ctx);
	for (size_t i = 0; i < ctx->nmasters; i++)
		kwi_master_free(&ctx->masters[i]);
	kwi_secure_free(ctx->masters, ctx->masters_size);
	for (size_t i = 0; i < ctx->nproviders; i++) {
		free(ctx->providers[i].name);
		free(ctx->providers[i].prefix);
	}
	free(ctx->providers);
	config_destroy(&ctx->cfg);
	free(ctx->path);
	free(ctx->dir);
}
